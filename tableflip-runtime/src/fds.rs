//! The descriptors a process holds for its successor: inherited ones, and the ones in use.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use crate::addr::{Address, Endpoint, Network, parse_address};
use crate::error::Error;
pub use crate::key::FdKind;
pub(crate) use crate::key::Key;
use crate::net::{self, ListenHook};
use crate::systemd::fdstore::{self, FdStore};
use crate::systemd::{self, Activated};

/// A Rust type that can take ownership of a passed socket or file.
///
/// Implemented for std's and tokio's socket types and for [`OwnedFd`]. The tokio types must
/// be created inside a tokio runtime; they are switched to non-blocking mode.
pub trait FromFd: Sized {
    /// The type's name, for error messages.
    const NAME: &'static str;
    /// Can this type hold a descriptor of `kind` on `network`?
    fn fits(kind: FdKind, network: Network) -> bool;
    /// Takes ownership of `fd`.
    fn from_fd(fd: OwnedFd) -> io::Result<Self>;
}

impl FromFd for OwnedFd {
    const NAME: &'static str = "OwnedFd";
    fn fits(_: FdKind, _: Network) -> bool {
        true
    }
    fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Ok(fd)
    }
}

fn is_tcp(n: Network) -> bool {
    !n.is_unix() && n.is_listener()
}

fn is_udp(n: Network) -> bool {
    !n.is_unix() && n.is_packet()
}

macro_rules! from_fd {
    ($($ty:ty, $name:literal, |$k:ident, $n:ident| $fits:expr, |$fd:ident| $conv:expr;)*) => {$(
        impl FromFd for $ty {
            const NAME: &'static str = $name;
            fn fits($k: FdKind, $n: Network) -> bool {
                $fits
            }
            fn from_fd($fd: OwnedFd) -> io::Result<Self> {
                $conv
            }
        }
    )*};
}

from_fd! {
    std::net::TcpListener, "std::net::TcpListener",
        |k, n| k == FdKind::Listener && is_tcp(n), |fd| Ok(fd.into());
    std::os::unix::net::UnixListener, "std::os::unix::net::UnixListener",
        |k, n| k == FdKind::Listener && n == Network::Unix, |fd| Ok(fd.into());
    std::net::UdpSocket, "std::net::UdpSocket",
        |k, n| matches!(k, FdKind::Packet | FdKind::Conn) && is_udp(n), |fd| Ok(fd.into());
    std::os::unix::net::UnixDatagram, "std::os::unix::net::UnixDatagram",
        |k, n| matches!(k, FdKind::Packet | FdKind::Conn) && n == Network::Unixgram, |fd| Ok(fd.into());
    std::net::TcpStream, "std::net::TcpStream",
        |k, n| k == FdKind::Conn && is_tcp(n), |fd| Ok(fd.into());
    std::os::unix::net::UnixStream, "std::os::unix::net::UnixStream",
        |k, n| k == FdKind::Conn && matches!(n, Network::Unix | Network::UnixPacket), |fd| Ok(fd.into());
    tokio::net::TcpListener, "tokio::net::TcpListener",
        |k, n| <std::net::TcpListener as FromFd>::fits(k, n),
        |fd| { let s = std::net::TcpListener::from(fd); s.set_nonblocking(true)?; tokio::net::TcpListener::from_std(s) };
    tokio::net::UnixListener, "tokio::net::UnixListener",
        |k, n| <std::os::unix::net::UnixListener as FromFd>::fits(k, n),
        |fd| { let s = std::os::unix::net::UnixListener::from(fd); s.set_nonblocking(true)?; tokio::net::UnixListener::from_std(s) };
    tokio::net::UdpSocket, "tokio::net::UdpSocket",
        |k, n| <std::net::UdpSocket as FromFd>::fits(k, n),
        |fd| { let s = std::net::UdpSocket::from(fd); s.set_nonblocking(true)?; tokio::net::UdpSocket::from_std(s) };
    tokio::net::UnixDatagram, "tokio::net::UnixDatagram",
        |k, n| <std::os::unix::net::UnixDatagram as FromFd>::fits(k, n),
        |fd| { let s = std::os::unix::net::UnixDatagram::from(fd); s.set_nonblocking(true)?; tokio::net::UnixDatagram::from_std(s) };
    tokio::net::TcpStream, "tokio::net::TcpStream",
        |k, n| <std::net::TcpStream as FromFd>::fits(k, n),
        |fd| { let s = std::net::TcpStream::from(fd); s.set_nonblocking(true)?; tokio::net::TcpStream::from_std(s) };
    tokio::net::UnixStream, "tokio::net::UnixStream",
        |k, n| <std::os::unix::net::UnixStream as FromFd>::fits(k, n),
        |fd| { let s = std::os::unix::net::UnixStream::from(fd); s.set_nonblocking(true)?; tokio::net::UnixStream::from_std(s) };
}

#[derive(Default)]
struct Inner {
    /// Passed by the parent and not claimed yet.
    inherited: Inherited,
    /// Claimed or added: what the next process gets. Shared with an upgrade in progress,
    /// which holds them open (a withdrawn one closes when that upgrade is done with it).
    used: HashMap<Key, Arc<OwnedFd>>,
    /// Passed by systemd (socket activation) and not claimed yet.
    activated: Vec<Activated>,
    /// Keys of claimed systemd sockets: their socket files are systemd's, never unlinked.
    systemd_keys: HashSet<Key>,
}

/// The descriptors this process will hand to its successor (Go tableflip's `Fds`).
///
/// Listeners, packet sockets and connections are keyed by `(kind, network, address)`, files
/// by name. Getting one that was inherited claims it; creating or adding one records a
/// duplicate of it. Everything claimed or added is passed on at the next upgrade.
///
/// A port-0 address is keyed by the address actually bound (`"127.0.0.1:0"` becomes
/// `"127.0.0.1:41234"`), and asking for a port-0 address claims an inherited socket of the
/// same network and host whatever its port: a service that binds an ephemeral port keeps it
/// across upgrades.
///
/// Sockets systemd passed (socket activation) are claimed before anything is bound: by
/// name with [`listen_activated`](Self::listen_activated), by address and socket type with
/// any of the `listen` methods. A claimed one is then keyed and passed on like any other.
pub struct Fds {
    inner: Mutex<Inner>,
    hook: Option<ListenHook>,
    /// systemd's fd store, where sockets this process brings in are kept (if it is used).
    store: FdStore,
    /// Connections handed over through a [`Handle`](crate::Handle): the release channel.
    pub(crate) conns: crate::handover::Registry,
}

impl Fds {
    pub(crate) fn new(inherited: Vec<(Key, OwnedFd)>, hook: Option<ListenHook>) -> Fds {
        Fds {
            inner: Mutex::new(Inner {
                inherited: Inherited::new(inherited),
                ..Inner::default()
            }),
            hook,
            store: FdStore::from_env(),
            conns: crate::handover::Registry::default(),
        }
    }

    /// systemd's fd store.
    pub(crate) fn store(&self) -> &FdStore {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream listener: inherited if the parent passed one for `network` and `addr`, else
    /// a socket systemd passed bound to `addr`, else bound now. `network` is one of
    /// `tcp tcp4 tcp6 unix unixpacket`.
    pub fn listen<T: FromFd>(&self, network: &str, addr: &str) -> Result<T, Error> {
        self.get_or_bind(FdKind::Listener, &Endpoint::parse(network, addr)?, None)
    }

    /// A packet socket: inherited, else activated by systemd at `addr`, else bound now.
    /// `network` is one of `udp udp4 udp6 unixgram`.
    pub fn listen_packet<T: FromFd>(&self, network: &str, addr: &str) -> Result<T, Error> {
        self.get_or_bind(FdKind::Packet, &Endpoint::parse(network, addr)?, None)
    }

    /// A stream listener or a packet socket (as `network` says) that systemd may have passed
    /// under `FileDescriptorName=name`: inherited from the previous process if it passed one
    /// for `network` and `addr`; else the socket systemd activated under `name`; else one it
    /// activated bound to `addr` with the network's socket type; else bound now. Once
    /// claimed, an activated socket is passed on at every upgrade like any other.
    ///
    /// A socket named `name` of the wrong type for `network` is an error
    /// ([`Error::WrongSocket`]). Activated sockets nobody claims are closed at
    /// [`Upgrader::ready`](crate::Upgrader::ready), with a warning naming them.
    ///
    /// ```no_run
    /// use tableflip_runtime::{Options, Upgrader};
    ///
    /// # fn main() -> Result<(), tableflip_runtime::Error> {
    /// let upg = Upgrader::new(Options::default())?;
    /// // Under a .socket unit with `FileDescriptorName=http` (or
    /// // `systemd-socket-activate -l 8080 --fdname=http`) this is systemd's socket, whatever
    /// // its address; started by hand, it is bound to 127.0.0.1:8080.
    /// let http: std::net::TcpListener =
    ///     upg.fds().listen_activated(Some("http"), "tcp", "127.0.0.1:8080")?;
    /// upg.ready()?;
    /// # drop(http); Ok(()) }
    /// ```
    pub fn listen_activated<T: FromFd>(
        &self,
        name: Option<&str>,
        network: &str,
        addr: &str,
    ) -> Result<T, Error> {
        self.claim_or_bind(&Endpoint::parse(network, addr)?, name)
    }

    /// [`listen_activated`](Self::listen_activated) for an endpoint parsed already.
    pub(crate) fn claim_or_bind<T: FromFd>(
        &self,
        endpoint: &Endpoint,
        name: Option<&str>,
    ) -> Result<T, Error> {
        let kind = if endpoint.network().is_packet() {
            FdKind::Packet
        } else {
            FdKind::Listener
        };
        self.get_or_bind(kind, endpoint, name)
    }

    /// An inherited stream listener, if the parent passed one.
    pub fn listener<T: FromFd>(&self, network: &str, addr: &str) -> Result<Option<T>, Error> {
        let endpoint = Endpoint::parse(network, addr)?;
        self.inherited(FdKind::Listener, &endpoint)
    }

    /// An inherited packet socket, if the parent passed one.
    pub fn packet_conn<T: FromFd>(&self, network: &str, addr: &str) -> Result<Option<T>, Error> {
        let endpoint = Endpoint::parse(network, addr)?;
        self.inherited(FdKind::Packet, &endpoint)
    }

    /// An inherited connection, if the parent passed one under `network` and `addr` (Go's
    /// `Fds.Conn`). The socket must fit `network` (a stream socket for `tcp`, `unix`, a
    /// datagram socket for `udp`, `unixgram`...), or this is [`Error::WrongSocket`].
    ///
    /// The previous process may still be reading it: read only once it has stopped, which
    /// is when it has exited ([`Upgrader::wait_for_parent`](crate::Upgrader::wait_for_parent)).
    /// Through a [`Handle`](crate::Handle), [`Handle::conn`](crate::Handle::conn) tells
    /// sooner, and hands over what the old process had read but not answered.
    pub fn conn<T: FromFd>(&self, network: &str, addr: &str) -> Result<Option<T>, Error> {
        // A connection's address is free-form (Go uses whatever the caller chose).
        self.take_inherited(FdKind::Conn, Network::parse(network)?, addr, None)
    }

    /// The `(network, address)` keys of the connections the parent passed that nobody has
    /// claimed yet, in the parent's order. Go's API has no such call: a Go successor must
    /// know its keys in advance.
    pub fn conns(&self) -> Vec<(String, String)> {
        self.lock()
            .inherited
            .iter()
            .filter(|(k, _)| k.kind == FdKind::Conn)
            .map(|(k, _)| (k.network.clone(), k.addr.clone()))
            .collect()
    }

    /// Records a listener to pass on (a duplicate of `fd`; closing yours is fine).
    pub fn add_listener(&self, network: &str, addr: &str, fd: BorrowedFd<'_>) -> Result<(), Error> {
        self.add(Key::new(FdKind::Listener, network, addr), fd)
    }

    /// Records a packet socket to pass on.
    pub fn add_packet_conn(
        &self,
        network: &str,
        addr: &str,
        fd: BorrowedFd<'_>,
    ) -> Result<(), Error> {
        self.add(Key::new(FdKind::Packet, network, addr), fd)
    }

    /// Records an established connection to pass on under `(network, addr)` (Go's
    /// `Fds.AddConn`): a duplicate of its descriptor, so closing yours is fine. Takes any
    /// socket by reference: tokio's or std's `TcpStream`, `UnixStream`, `UdpSocket`,
    /// `UnixDatagram`, or a [`BorrowedFd`]. The address is a free-form key (Go services use
    /// the peer's address); the socket must fit `network` ([`Error::WrongSocket`]).
    ///
    /// Nothing stops this process from reading it after the handover: stop when
    /// [`Upgrader::exit`](crate::Upgrader::exit) resolves. [`Handle::add_conn`](crate::Handle::add_conn)
    /// makes that, and withdrawing a connection that ended, part of the type.
    pub fn add_conn(&self, network: &str, addr: &str, conn: impl AsFd) -> Result<(), Error> {
        let key = Key::new(FdKind::Conn, network, addr);
        let net = Network::parse(network)?;
        net::check_conn(conn.as_fd(), net).map_err(|msg| Error::WrongSocket {
            what: key.to_string(),
            msg,
        })?;
        self.add(key, conn.as_fd())
    }

    /// Takes an inherited file out of the inherited set without passing it on.
    pub(crate) fn take_inherited_file(&self, name: &str) -> Option<OwnedFd> {
        self.lock()
            .inherited
            .remove(&Key::file(name))
            .map(|(_, fd)| fd)
    }

    /// Stops passing `key` on (a handed-over connection that ended).
    pub(crate) fn withdraw(&self, key: &Key) {
        self.lock().used.remove(key);
    }

    /// An inherited file, by name: the way to receive state (a memfd, a pipe) from the
    /// previous process. Returns a duplicate; the file stays recorded for the next process.
    pub fn file(&self, name: &str) -> Result<Option<OwnedFd>, Error> {
        let key = Key::file(name);
        let mut inner = self.lock();
        let Some((key, fd)) = inner.inherited.remove(&key) else {
            return Ok(None);
        };
        let dup = fd
            .try_clone()
            .map_err(|e| Error::io(format!("can't duplicate inherited {key}"), e))?;
        inner.used.insert(key, Arc::new(fd));
        Ok(Some(dup))
    }

    /// Records a file to pass on, by name (a duplicate of `fd`).
    pub fn add_file(&self, name: &str, fd: BorrowedFd<'_>) -> Result<(), Error> {
        self.add(Key::file(name), fd)
    }

    fn add(&self, key: Key, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| Error::io(format!("can't duplicate {key}"), e))?;
        self.store.stored(&key, fd, true);
        let mut inner = self.lock();
        inner.inherited.remove(&key);
        inner.used.insert(key, Arc::new(dup));
        Ok(())
    }

    /// The inherited listener or packet socket for `endpoint`, if the parent passed one.
    fn inherited<T: FromFd>(&self, kind: FdKind, endpoint: &Endpoint) -> Result<Option<T>, Error> {
        let (net, addr) = (endpoint.network(), endpoint.as_str());
        self.take_inherited(kind, net, addr, Some(endpoint.address()))
    }

    /// Claims the inherited descriptor keyed `(kind, net, addr)`; `requested` is the parsed
    /// address (none for a connection, whose address is free-form).
    fn take_inherited<T: FromFd>(
        &self,
        kind: FdKind,
        net: Network,
        addr: &str,
        requested: Option<&Address>,
    ) -> Result<Option<T>, Error> {
        check_type::<T>(kind, net)?;
        let mut inner = self.lock();
        let Some(pos) = inner.inherited.find(kind, net, addr, requested) else {
            return Ok(None);
        };
        let (key, fd) = inner.inherited.get(pos);
        let checked = match kind {
            FdKind::Conn => net::check_conn(fd.as_fd(), net),
            _ => net::check_socket(fd.as_fd(), net),
        };
        checked.map_err(|msg| Error::WrongSocket {
            what: key.to_string(),
            msg,
        })?;
        let (key, fd) = inner.inherited.take(pos);
        let dup = fd
            .try_clone()
            .map_err(|e| Error::io(format!("can't duplicate inherited {key}"), e))?;
        inner.used.insert(key.clone(), Arc::new(fd));
        drop(inner);
        T::from_fd(dup)
            .map(Some)
            .map_err(|e| Error::io(format!("can't use inherited {key} as {}", T::NAME), e))
    }

    fn get_or_bind<T: FromFd>(
        &self,
        kind: FdKind,
        endpoint: &Endpoint,
        name: Option<&str>,
    ) -> Result<T, Error> {
        if let Some(found) = self.inherited::<T>(kind, endpoint)? {
            return Ok(found);
        }
        let (network, addr) = (endpoint.network().as_str(), endpoint.as_str());
        let listen_err = |source| Error::Listen {
            network: network.to_owned(),
            addr: addr.to_owned(),
            source,
        };
        let activated = systemd::claim(&mut self.lock().activated, name, endpoint)?;
        let from_systemd = activated
            .as_ref()
            .map(|fd| net::local_address(fd.as_fd()).unwrap_or_default());
        let fd = match activated {
            Some(fd) => fd,
            None => match kind {
                FdKind::Listener => net::bind_listener(endpoint, self.hook.as_ref()),
                _ => net::bind_packet(endpoint, self.hook.as_ref()),
            }
            .map_err(listen_err)?,
        };
        let key_addr = match endpoint.address() {
            Address::Inet { port: 0, .. } => net::local_address(fd.as_fd()).map_err(listen_err)?,
            _ => addr.to_owned(),
        };
        let key = Key::new(kind, network, &key_addr);
        let dup = fd.try_clone().map_err(listen_err)?;
        let bound_here = from_systemd.is_none();
        {
            let mut inner = self.lock();
            inner.inherited.remove(&key);
            inner.used.insert(key.clone(), Arc::new(fd));
            if let Some(bound) = from_systemd {
                tracing::info!(key = %key, bound, "claimed a systemd-activated socket");
                inner.systemd_keys.insert(key.clone());
            }
        }
        if bound_here {
            self.store.stored(&key, dup.as_fd(), false);
        }
        T::from_fd(dup).map_err(|e| Error::io(format!("can't use {key} as {}", T::NAME), e))
    }

    /// At start-up: the sockets systemd passed, for listeners to claim.
    pub(crate) fn set_activated(&self, activated: Vec<Activated>) {
        // Sockets from systemd's fd store are claimed as if a previous process passed them.
        let (stored, activated) = fdstore::split(activated);
        let mut inner = self.lock();
        if !stored.is_empty() {
            let mut all = std::mem::take(&mut inner.inherited).into_vec();
            all.extend(stored);
            inner.inherited = Inherited::new(all);
        }
        inner.activated = activated;
    }

    /// At ready: closes the sockets systemd passed and nobody claimed; returns them, described.
    pub(crate) fn close_activated(&self) -> Vec<String> {
        let unclaimed = std::mem::take(&mut self.lock().activated);
        self.store.unclaimed(&unclaimed);
        unclaimed.iter().map(Activated::describe).collect()
    }

    /// Everything in use, in a stable order, for the next process. No descriptor is copied:
    /// the upgrade shares them (see `sys::ShimPlan::new` for why a copy would cost
    /// milliseconds with many listeners).
    pub(crate) fn snapshot(&self) -> Vec<(Key, Arc<OwnedFd>)> {
        let passed: Vec<(Key, Arc<OwnedFd>)> = {
            let inner = self.lock();
            let mut all: Vec<(Key, Arc<OwnedFd>)> = inner
                .used
                .iter()
                .map(|(k, fd)| (k.clone(), Arc::clone(fd)))
                .collect();
            all.sort_by_cached_key(|(k, _)| k.to_string());
            all
        };
        // Not under this lock: the connection registry takes it under its own.
        self.conns.passing(passed.iter().map(|(k, _)| k));
        passed
    }

    /// How many descriptors are in use.
    pub fn len(&self) -> usize {
        self.lock().used.len()
    }

    /// Is nothing in use?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At ready: closes what the parent passed and nobody claimed, unlinking the socket files
    /// of unclaimed unix sockets.
    pub(crate) fn close_inherited(&self) -> Vec<String> {
        let unclaimed = std::mem::take(&mut self.lock().inherited).into_vec();
        let names = unclaimed.iter().map(|(k, _)| k.to_string()).collect();
        for (key, fd) in unclaimed {
            if let Some(path) = key.socket_path() {
                unlink_socket(path);
            }
            self.store.removed(&key);
            drop(fd);
        }
        names
    }

    /// At a stop without an upgrade: close and unlink the socket files of used unix sockets.
    pub(crate) fn close_and_remove_used(&self) {
        let (used, systemd_keys) = {
            let mut inner = self.lock();
            (std::mem::take(&mut inner.used), inner.systemd_keys.clone())
        };
        for (key, fd) in used {
            // Socket files stay where systemd holds the socket (a .socket unit, the fd store).
            let systemds = systemd_keys.contains(&key) || self.store.is_on();
            if let Some(path) = key.socket_path().filter(|_| !systemds) {
                unlink_socket(path);
            }
            drop(fd);
        }
    }
}

fn check_type<T: FromFd>(kind: FdKind, net: Network) -> Result<(), Error> {
    let kind_fits = match kind {
        FdKind::Listener => net.is_listener(),
        FdKind::Packet => net.is_packet(),
        FdKind::Conn | FdKind::File => true,
    };
    if !kind_fits || !T::fits(kind, net) {
        return Err(Error::WrongType {
            ty: T::NAME,
            kind: kind.as_str(),
            network: net.to_string(),
        });
    }
    Ok(())
}

/// Removes a unix socket file, only if it is a socket (as Go does).
fn unlink_socket(path: &str) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!(path, error = %e, "can't remove unix socket file");
    }
}

impl fmt::Debug for Fds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Fds")
            .field(
                "inherited",
                &inner
                    .inherited
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .collect::<Vec<_>>(),
            )
            .field(
                "used",
                &inner.used.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            )
            .field(
                "activated",
                &inner.activated.iter().map(|a| &a.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where a port-0 request may find its socket: same kind, network and host (wildcards as one).
type Bucket = (FdKind, String, Option<String>);

/// The descriptors a parent passed and nobody claimed yet, indexed: by exact key, and for
/// port-0 requests by host, so that claiming N of them costs O(N), not O(N²).
#[derive(Default)]
struct Inherited {
    /// In the parent's order; `None` once claimed.
    slots: Vec<Option<(Key, OwnedFd)>>,
    by_key: HashMap<Key, usize>,
    /// Inet sockets by (kind, network, host), in the parent's order.
    by_host: HashMap<Bucket, std::collections::VecDeque<usize>>,
}

impl Inherited {
    fn new(files: Vec<(Key, OwnedFd)>) -> Inherited {
        let mut inherited = Inherited::default();
        for (i, (key, fd)) in files.into_iter().enumerate() {
            if let Some(bucket) = bucket_of(&key) {
                inherited.by_host.entry(bucket).or_default().push_back(i);
            }
            inherited.by_key.insert(key.clone(), i);
            inherited.slots.push(Some((key, fd)));
        }
        inherited
    }

    /// The slot holding `addr` exactly, else (for a port-0 request) the first unclaimed
    /// socket of the same kind, network and host.
    fn find(
        &mut self,
        kind: FdKind,
        net: Network,
        addr: &str,
        requested: Option<&Address>,
    ) -> Option<usize> {
        if let Some(&pos) = self.by_key.get(&Key::new(kind, net.as_str(), addr)) {
            return Some(pos);
        }
        let Some(Address::Inet { host, port: 0 }) = requested else {
            return None;
        };
        let bucket = (kind, net.as_str().to_owned(), normal_host(host.as_deref()));
        let queue = self.by_host.get_mut(&bucket)?;
        while let Some(&pos) = queue.front() {
            if self.slots[pos].is_some() {
                return Some(pos);
            }
            queue.pop_front();
        }
        None
    }

    fn get(&self, pos: usize) -> (&Key, &OwnedFd) {
        let (key, fd) = self.slots[pos].as_ref().expect("found slots are occupied");
        (key, fd)
    }

    fn take(&mut self, pos: usize) -> (Key, OwnedFd) {
        let (key, fd) = self.slots[pos].take().expect("found slots are occupied");
        self.by_key.remove(&key);
        (key, fd)
    }

    fn remove(&mut self, key: &Key) -> Option<(Key, OwnedFd)> {
        let pos = *self.by_key.get(key)?;
        Some(self.take(pos))
    }

    fn iter(&self) -> impl Iterator<Item = &(Key, OwnedFd)> {
        self.slots.iter().flatten()
    }

    fn into_vec(self) -> Vec<(Key, OwnedFd)> {
        self.slots.into_iter().flatten().collect()
    }
}

/// The port-0 bucket of an inherited inet socket's key.
fn bucket_of(key: &Key) -> Option<Bucket> {
    let net = Network::parse(&key.network).ok()?;
    match parse_address(net, &key.addr).ok()? {
        Address::Inet { host, .. } => {
            Some((key.kind, key.network.clone(), normal_host(host.as_deref())))
        }
        _ => None,
    }
}

/// All-interfaces, however written, is one host.
fn normal_host(host: Option<&str>) -> Option<String> {
    match host {
        None | Some("0.0.0.0" | "::") => None,
        Some(h) => Some(h.to_owned()),
    }
}
