//! Established connections handed to the next process (Go tableflip's `AddConn` / `Conn`,
//! wire kind `conn`), and who reads them when.
//!
//! # Who reads what, when
//!
//! A handed-over connection is one socket open in two processes at once: the old one that
//! accepted it and the successor that inherited a duplicate. Exactly one of them may read it
//! at any moment, and no byte the client sent may be lost between them:
//!
//! 1. The old process records the connection with [`Handle::add_conn`](crate::Handle::add_conn)
//!    (at accept, say) and keeps serving it. The [`ConnHandoff`] it gets back withdraws the
//!    connection when dropped before a handover: a session that ended is not passed on.
//! 2. An upgrade passes every recorded connection to the successor, which claims it (before it
//!    says ready) with [`Handle::conn`](crate::Handle::conn) — an [`InheritedConn`] — but
//!    does **not** read it yet.
//! 3. When the successor is ready, the old process's [`shutdown`](crate::Handle::shutdown)
//!    resolves with [`Upgraded`](crate::ShutdownReason::Upgraded). Each session then stops
//!    reading and calls [`ConnHandoff::release`] with the bytes it had read but not yet
//!    processed (a partial line, say), and drops its copy of the socket.
//! 4. The successor's [`InheritedConn::resume`] resolves once the old process released that
//!    connection, with those bytes: the successor processes them first, then reads on.
//!
//! So nothing is read twice and nothing is lost: the old process reads until it releases,
//! the successor from then on, and what the old process had buffered travels with the
//! release.
//!
//! The releases travel on a channel the old process passes along with the connections: a
//! unix stream socket, passed as the file `tableflip-rs/conn-handover` (a names entry
//! `["fd", "tableflip-rs/conn-handover", ""]`, which a Go successor ignores and closes at
//! its `Ready`). Each release is one record (big-endian): `u32` length of the rest, `u16`
//! length + network, `u16` length + address, then the unread bytes; end of file means
//! every connection is released (the old process closes it once its last [`ConnHandoff`]
//! is gone after the handover, or by exiting). When the previous process passed no channel
//! (a Go parent), a connection counts as released when the previous process has exited:
//! Go services stop using their connections before they exit, and can't hand over
//! buffered bytes.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::error::Error;
use crate::fds::{FdKind, FromFd, Key};
use crate::handover::Released;
use crate::upgrader::{ExitReason, Upgrader};

/// The name of the release channel among the passed files.
pub(crate) const CHANNEL: &str = "tableflip-rs/conn-handover";

/// The largest record accepted on the release channel (what a session had buffered).
const MAX_RECORD: usize = 16 << 20;

/// How long the release channel is read after the previous process has exited.
const AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long writing one release may block (the successor reads the channel actively).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets up, once per process: reading the previous process's releases, and the channel to
/// the next one. Needs the tokio runtime.
fn start(upgrader: &Upgrader) -> Result<(), Error> {
    let fds = upgrader.fds();
    let mut state = fds.conns.lock();
    if state.started {
        return Ok(());
    }
    // Lock order: this registry, then the descriptors' (`Fds` never nests them the other way).
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::io("can't create the handover channel", e))?;
    ours.set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| Error::io("can't set up the handover channel", e))?;
    let (tx, rx) = watch::channel(Released::default());
    let inherited = fds.take_inherited_file(CHANNEL);
    tokio::spawn(read_releases(inherited, tx, upgrader.clone()));
    fds.add_file(CHANNEL, theirs.as_fd())?;
    state.incoming = Some(rx);
    state.writer = Some(ours);
    state.started = true;
    drop(state);
    tokio::spawn(close_after_handover(upgrader.clone()));
    Ok(())
}

/// Reads the previous process's releases until the channel ends (or, without a channel,
/// until the previous process has exited).
async fn read_releases(channel: Option<OwnedFd>, tx: watch::Sender<Released>, upgrader: Upgrader) {
    if upgrader.has_parent() {
        let parent_gone = async {
            let _ = upgrader.wait_for_parent().await;
        };
        match channel {
            // The channel ends when the previous process closes it or exits; its releases
            // are read to the end even if its exit is seen first (they were sent before).
            // Only if some other process holds the writing end too does the exit decide,
            // a little later.
            Some(fd) => {
                let read = read_channel(fd, &tx);
                tokio::pin!(read);
                tokio::select! {
                    biased;
                    () = &mut read => {}
                    () = parent_gone => {
                        let _ = tokio::time::timeout(AFTER_EXIT, read).await;
                    }
                }
            }
            None => parent_gone.await,
        }
    }
    tx.send_modify(|r| r.all = true);
}

async fn read_channel(fd: OwnedFd, tx: &watch::Sender<Released>) {
    let stream = UnixStream::from(fd);
    let stream = stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(stream));
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "can't read the handover channel; waiting for the parent");
            return std::future::pending().await;
        }
    };
    loop {
        match read_record(&mut stream).await {
            Ok(Some((key, unread))) => {
                tracing::debug!(conn = %key, unread = unread.len(), "connection released");
                tx.send_modify(|r| {
                    r.unread.insert(key, unread);
                });
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "bad record on the handover channel; taking every connection now");
                return;
            }
        }
    }
}

async fn read_record(stream: &mut tokio::net::UnixStream) -> io::Result<Option<(Key, Vec<u8>)>> {
    let len = match stream.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_RECORD {
        return Err(io::Error::other(format!("record of {len} bytes")));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await?;
    decode(&buf)
        .map(Some)
        .ok_or_else(|| io::Error::other("malformed record"))
}

fn encode(key: &Key, unread: &[u8]) -> Option<Vec<u8>> {
    let net = key.network.as_bytes();
    let addr = key.addr.as_bytes();
    let len = 4 + net.len() + addr.len() + unread.len();
    if len > MAX_RECORD {
        return None;
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for s in [net, addr] {
        out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_be_bytes());
        out.extend_from_slice(s);
    }
    out.extend_from_slice(unread);
    Some(out)
}

fn decode(mut buf: &[u8]) -> Option<(Key, Vec<u8>)> {
    let mut string = || {
        let (len, rest) = buf.split_first_chunk::<2>()?;
        let len = u16::from_be_bytes(*len) as usize;
        let s = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
        buf = &rest[len..];
        Some(s)
    };
    let network = string()?;
    let addr = string()?;
    Some((Key::new(FdKind::Conn, &network, &addr), buf.to_vec()))
}

/// After a handover, closes the channel once no [`ConnHandoff`] is left.
async fn close_after_handover(upgrader: Upgrader) {
    let reason = upgrader.exit().await;
    let mut state = upgrader.fds().conns.lock();
    state.handed_over = reason == ExitReason::Upgraded;
    if state.open == 0 {
        state.writer = None;
    }
}

/// Records `conn` for the next process; see [`Handle::add_conn`](crate::Handle::add_conn).
pub(crate) fn add(
    upgrader: &Upgrader,
    network: &str,
    addr: &str,
    conn: impl AsFd,
) -> Result<ConnHandoff, Error> {
    start(upgrader)?;
    upgrader.fds().add_conn(network, addr, conn)?;
    Ok(ConnHandoff::new(upgrader, network, addr))
}

/// Claims an inherited connection; see [`Handle::conn`](crate::Handle::conn).
pub(crate) fn claim<T: FromFd>(
    upgrader: &Upgrader,
    network: &str,
    addr: &str,
) -> Result<Option<InheritedConn<T>>, Error> {
    start(upgrader)?;
    let Some(conn) = upgrader.fds().conn::<T>(network, addr)? else {
        return Ok(None);
    };
    let released = upgrader
        .fds()
        .conns
        .lock()
        .incoming
        .clone()
        .expect("started");
    Ok(Some(InheritedConn {
        conn,
        handoff: ConnHandoff::new(upgrader, network, addr),
        released,
    }))
}

/// The inherited connections nobody claimed yet; see [`Handle::conns`](crate::Handle::conns).
pub(crate) fn inherited(upgrader: &Upgrader) -> Result<Vec<(String, String)>, Error> {
    start(upgrader)?;
    Ok(upgrader.fds().conns())
}

/// A connection recorded for the next process, from [`Handle::add_conn`](crate::Handle::add_conn)
/// or with a claimed [`InheritedConn`].
///
/// Keep it as long as the session runs. When [`shutdown`](crate::Handle::shutdown) resolves
/// with [`Upgraded`](crate::ShutdownReason::Upgraded), stop reading the connection and call
/// [`release`](Self::release) with the bytes read but not yet processed: the successor goes
/// on from there (if `release` returns false, the successor never got this connection:
/// serve it on while draining). Dropped before a handover (the session ended), it withdraws the
/// connection: it will not be passed on. Dropped after a handover, it releases the
/// connection with no unread bytes.
#[must_use = "dropping it withdraws the connection from the handover"]
pub struct ConnHandoff {
    key: Key,
    upgrader: Upgrader,
    done: bool,
}

impl ConnHandoff {
    fn new(upgrader: &Upgrader, network: &str, addr: &str) -> ConnHandoff {
        upgrader.fds().conns.lock().open += 1;
        ConnHandoff {
            key: Key::new(FdKind::Conn, network, addr),
            upgrader: upgrader.clone(),
            done: false,
        }
    }

    /// The connection's network.
    pub fn network(&self) -> &str {
        &self.key.network
    }

    /// The connection's key (an address).
    pub fn addr(&self) -> &str {
        &self.key.addr
    }

    /// After a handover: this process stopped reading the connection; `unread` is what it
    /// read and did not process, which the successor gets first. Returns true then.
    ///
    /// Returns false if the successor does not have the connection, and this process goes
    /// on serving it (while it drains): after a stop, or when the connection was recorded
    /// after the upgrade had begun (the successor had already got its descriptors). A
    /// connection released before any handover is withdrawn, as dropping does.
    ///
    /// Writes to a local socket (blocking at most 5 s if the successor does not read).
    pub fn release(mut self, unread: &[u8]) -> bool {
        self.finish(unread)
    }

    fn finish(&mut self, unread: &[u8]) -> bool {
        if std::mem::replace(&mut self.done, true) {
            return false;
        }
        let fds = self.upgrader.fds();
        let upgraded = self.upgrader.exit_reason() == Some(ExitReason::Upgraded);
        if !upgraded {
            fds.withdraw(&self.key);
        }
        let mut state = fds.conns.lock();
        let handed = upgraded && state.passed.contains(&self.key);
        if handed && let Some(writer) = &mut state.writer {
            match encode(&self.key, unread) {
                Some(record) => {
                    if let Err(e) = writer.write_all(&record) {
                        // A Go successor closes the channel unread: it reads once we exit.
                        tracing::debug!(conn = %self.key, error = %e, "can't send the release");
                    }
                }
                None => tracing::warn!(
                    conn = %self.key,
                    unread = unread.len(),
                    "too much unread data to hand over; the successor takes the connection when this process exits"
                ),
            }
        }
        state.open = state.open.saturating_sub(1);
        if state.open == 0 && (state.handed_over || upgraded) {
            state.writer = None;
        }
        handed
    }
}

impl Drop for ConnHandoff {
    fn drop(&mut self) {
        let _ = self.finish(&[]);
    }
}

impl fmt::Debug for ConnHandoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandoff")
            .field("conn", &self.key.to_string())
            .finish()
    }
}

/// A connection the previous process handed over, claimed but not to be read until the
/// previous process released it: [`resume`](Self::resume) waits for that.
///
/// Claim inherited connections before the service says ready (with `ready = "manual"`,
/// then [`Handle::ready`](crate::Handle::ready)): at ready, whatever was inherited and not
/// claimed is closed.
pub struct InheritedConn<T> {
    conn: T,
    handoff: ConnHandoff,
    released: watch::Receiver<Released>,
}

/// A connection the previous process released: go on serving it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Resumed<T> {
    /// The connection.
    pub conn: T,
    /// What the previous process had read from it and not processed: process it first.
    pub unread: Vec<u8>,
    /// The connection is recorded for the next process too: keep this while serving it.
    pub handoff: ConnHandoff,
}

impl<T> InheritedConn<T> {
    /// The connection's network.
    pub fn network(&self) -> &str {
        self.handoff.network()
    }

    /// The connection's key (an address).
    pub fn addr(&self) -> &str {
        self.handoff.addr()
    }

    /// Waits until the previous process has released the connection (after this process
    /// said ready and the old one stopped reading it), or has exited; then the connection
    /// is this process's alone.
    pub async fn resume(mut self) -> Resumed<T> {
        let key = self.handoff.key.clone();
        let unread = match self
            .released
            .wait_for(|r| r.all || r.unread.contains_key(&key))
            .await
        {
            Ok(r) => r.unread.get(&key).cloned().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        Resumed {
            conn: self.conn,
            unread,
            handoff: self.handoff,
        }
    }
}

impl<T> fmt::Debug for InheritedConn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InheritedConn")
            .field("conn", &self.handoff.key.to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Network;

    #[test]
    fn a_release_record_round_trips() {
        let key = Key::new(FdKind::Conn, "tcp", "127.0.0.1:5555");
        let record = encode(&key, b"partial li").unwrap();
        assert_eq!(
            u32::from_be_bytes(record[..4].try_into().unwrap()) as usize,
            record.len() - 4
        );
        assert_eq!(decode(&record[4..]), Some((key, b"partial li".to_vec())));
    }

    #[test]
    fn truncated_or_garbage_records_are_refused() {
        let key = Key::new(FdKind::Conn, "unix", "peer");
        let record = encode(&key, b"").unwrap();
        for cut in 0..record.len() - 4 {
            assert_eq!(decode(&record[4..4 + cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(&[0xff, 0xff, 0]), None);
        assert_eq!(decode(&[0, 2, 0xc3, 0x28, 0, 0]), None, "not UTF-8");
    }

    #[test]
    fn check_conn_tells_connections_from_listeners_and_wrong_types() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(crate::net::check_conn(client.as_fd(), Network::Tcp), Ok(()));
        assert!(crate::net::check_conn(listener.as_fd(), Network::Tcp).is_err());
        // Reset by its peer: still a connection to hand over (and to find closed).
        let (accepted, _) = listener.accept().unwrap();
        socket2::SockRef::from(&accepted)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(accepted);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(crate::net::check_conn(client.as_fd(), Network::Tcp), Ok(()));
        assert!(crate::net::check_conn(client.as_fd(), Network::Udp).is_err());
        assert!(crate::net::check_conn(client.as_fd(), Network::Unix).is_err());
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(crate::net::check_conn(a.as_fd(), Network::Unix), Ok(()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(crate::net::check_conn(udp.as_fd(), Network::Udp), Ok(()));
        assert!(crate::net::check_conn(udp.as_fd(), Network::Tcp).is_err());
    }

    fn inherited(entries: Vec<(&str, &str, OwnedFd)>) -> crate::Fds {
        let files = entries
            .into_iter()
            .map(|(net, addr, fd)| (Key::new(FdKind::Conn, net, addr), fd))
            .collect();
        crate::Fds::new(files, None)
    }

    #[test]
    fn inherited_connections_are_listed_and_claimed_typed_and_passed_on() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fds = inherited(vec![
            ("unix", "peer-1", OwnedFd::from(theirs)),
            ("udp", "127.0.0.1:53", OwnedFd::from(udp)),
        ]);
        assert_eq!(
            fds.conns(),
            vec![
                ("unix".to_owned(), "peer-1".to_owned()),
                ("udp".to_owned(), "127.0.0.1:53".to_owned())
            ]
        );
        let mut stream: UnixStream = fds.conn("unix", "peer-1").unwrap().unwrap();
        let udp: std::net::UdpSocket = fds.conn("udp", "127.0.0.1:53").unwrap().unwrap();
        assert!(fds.conns().is_empty(), "claimed");
        assert_eq!(fds.len(), 2, "both are passed on at the next upgrade");
        use std::io::Read;
        (&ours).write_all(b"hi").unwrap();
        let mut buf = [0; 2];
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(udp);
    }

    #[test]
    fn an_inherited_connection_of_the_wrong_type_is_a_clear_error() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fds = inherited(vec![("tcp", "peer", OwnedFd::from(udp))]);
        let err = fds.conn::<std::net::TcpStream>("tcp", "peer").unwrap_err();
        assert!(matches!(err, Error::WrongSocket { .. }), "{err}");
        let err = fds
            .conn::<std::net::TcpListener>("tcp", "peer")
            .unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err}");
    }

    #[test]
    fn add_conn_refuses_a_listener_and_records_a_connection() {
        let fds = inherited(Vec::new());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(fds.add_conn("tcp", "x", &listener).is_err());
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        fds.add_conn("tcp", "x", &client).unwrap();
        assert_eq!(fds.len(), 1);
        fds.withdraw(&Key::new(FdKind::Conn, "tcp", "x"));
        assert!(fds.is_empty());
    }
}
