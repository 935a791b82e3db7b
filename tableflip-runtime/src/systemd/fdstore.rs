//! systemd's file descriptor store: systemd keeps the service's listening sockets while no
//! process of it runs, so that a crash, a `kill -9` or a `systemctl restart` refuses no
//! connection: connections wait in the socket's backlog until the next process accepts them.
//!
//! # When it is used
//!
//! When `$FDSTORE` is a positive number and `NOTIFY_SOCKET` is usable. systemd >= 254 sets
//! `$FDSTORE` to the unit's `FileDescriptorStoreMax=` when that is above 0; on older systemd
//! (Debian 12 ships 252) the unit sets it itself, to the same number:
//! `Environment=FDSTORE=16` next to `FileDescriptorStoreMax=16`. `TABLEFLIP_FDSTORE=0` keeps
//! the runtime out of the store even then (the store is the service's own).
//!
//! # Names
//!
//! Each socket is stored with `FDSTORE=1`, `FDPOLL=0` and `FDNAME=tableflip/<kind>/<network>/<address>`:
//! its key in the upgrade handshake (`listener/tcp/127.0.0.1:8080`), with `:`, `%`, spaces,
//! control and non-ASCII bytes written `%XX`, because systemd allows neither `:` nor control
//! characters in a name. The key is what identifies a socket across versions already: a
//! successor claims an inherited socket by it, whether the socket was declared with
//! `#[listener]`, opened with `tf.listen()`, or asked for port 0 (then the key holds the port
//! actually bound, and a request for port 0 on the same host claims it). Every process that
//! holds a socket can compute its name, also one that no longer declares it and must remove it.
//!
//! A process started by systemd gets the stored sockets back as `LISTEN_FDS` with these names
//! in `LISTEN_FDNAMES`. The runtime decodes the names into keys and treats those sockets exactly
//! as sockets inherited from a previous process (the store is a parent that never dies): a
//! listener claims its socket by key, a port-0 request one of the same host, and a socket that
//! nothing claims is closed at ready and removed from the store (`FDSTOREREMOVE=1`). A name
//! longer than systemd's 255 bytes (a long unix socket path) is stored as
//! `tableflip/#<hash of the key>`; such a socket comes back as an activated one, claimed by
//! address and socket type.
//!
//! # Who stores what
//!
//! Each socket is stored once, by the process that brought it into the service: the one that
//! bound it (a declared listener, `tf.listen()`, `Fds::add_listener`). Sockets inherited from
//! the previous process or taken from the store are in the store already, and sockets from a
//! `.socket` unit are held by systemd anyway: neither is sent again. systemd would drop a
//! second copy of a stored socket (`service_add_fd_store` compares each new descriptor with
//! the stored ones, `same_fd`), but sending every socket at every reload would cost PID 1 one
//! comparison per stored descriptor for each of them.
//!
//! systemd accepts these messages only from the unit's main process (`NotifyAccess=main`). A
//! process started cold is that from the start; a successor becomes it when its parent hands
//! over (`MAINPID=`), so a successor sends its changes (sockets it bound, sockets its version no
//! longer declares) once its parent has exited. Until then the parent still holds every
//! socket it passed on.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use super::{Activated, NOTIFY_SOCKET, notify_addr, send};
use crate::key::{FdKind, Key};

/// The variable systemd >= 254 sets to the unit's `FileDescriptorStoreMax=`.
pub(crate) const FDSTORE: &str = "FDSTORE";
/// `TABLEFLIP_FDSTORE=0` keeps the runtime out of the store.
pub(crate) const OPT_OUT: &str = "TABLEFLIP_FDSTORE";
/// The start of every name this runtime stores a socket under.
pub(crate) const PREFIX: &str = "tableflip/";
/// systemd's limit on a descriptor name (`FDNAME_MAX`).
const NAME_MAX: usize = 255;

/// The fd store of this process's unit: what to send, and when.
pub(crate) struct FdStore {
    /// The notification socket; `None` when the store is not used.
    target: Option<(SocketAddr, String)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Is this process the unit's main process, whose messages systemd accepts?
    live: bool,
    /// Changes made before that, in order.
    pending: Vec<Op>,
}

enum Op {
    Store { name: String, fd: OwnedFd },
    Remove { name: String },
}

impl FdStore {
    /// Reads `$FDSTORE`, `TABLEFLIP_FDSTORE` and `NOTIFY_SOCKET`.
    pub(crate) fn from_env() -> FdStore {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let max = var(FDSTORE);
        let opted_out = var(OPT_OUT).is_some_and(|v| v == "0");
        let target = match (max, opted_out) {
            (None, _) => None,
            (Some(_), true) => {
                tracing::info!("{OPT_OUT}=0: listening sockets are not kept in systemd's fd store");
                None
            }
            (Some(max), false) => match max.trim().parse::<u32>() {
                Ok(0) => None,
                Ok(max) => target(max),
                Err(_) => {
                    tracing::warn!(
                        value = max,
                        "{FDSTORE} is not a number: listening sockets are not kept in systemd's fd store"
                    );
                    None
                }
            },
        };
        FdStore {
            target,
            state: Mutex::default(),
        }
    }

    /// A store that sends nothing.
    #[cfg(test)]
    pub(crate) fn off() -> FdStore {
        FdStore {
            target: None,
            state: Mutex::default(),
        }
    }

    /// Does this process keep its sockets in systemd's fd store?
    pub(crate) fn is_on(&self) -> bool {
        self.target.is_some()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This process brought the socket `key` into the service (bound it, or was handed it by
    /// the application): store it. With `replace`, whatever the store holds under its name
    /// goes first.
    pub(crate) fn stored(&self, key: &Key, fd: BorrowedFd<'_>, replace: bool) {
        if !self.is_on() || !is_socket_kind(key.kind) {
            return;
        }
        let fd = match fd.try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "can't duplicate a socket for systemd's fd store");
                return;
            }
        };
        let name = name_of(key);
        let mut state = self.state();
        if replace {
            state.pending.push(Op::Remove { name: name.clone() });
        }
        state.pending.push(Op::Store { name, fd });
        self.flush(state);
    }

    /// The socket `key` is gone from this service (its version no longer declares it): remove
    /// it from the store.
    pub(crate) fn removed(&self, key: &Key) {
        if !self.is_on() || !is_socket_kind(key.kind) {
            return;
        }
        let mut state = self.state();
        state.pending.push(Op::Remove { name: name_of(key) });
        self.flush(state);
    }

    /// Sockets systemd passed that nothing claimed: those that came from this store leave it.
    pub(crate) fn unclaimed(&self, activated: &[Activated]) {
        if !self.is_on() {
            return;
        }
        let mut state = self.state();
        for a in activated.iter().filter(|a| a.name.starts_with(PREFIX)) {
            state.pending.push(Op::Remove {
                name: a.name.clone(),
            });
        }
        self.flush(state);
    }

    /// This process is now the unit's main process: send what waited, and from now on every
    /// change at once.
    pub(crate) fn go_live(&self) {
        if !self.is_on() {
            return;
        }
        let mut state = self.state();
        state.live = true;
        self.flush(state);
    }

    /// Sends the pending changes if this process is live: removals first (a name removed and
    /// stored again ends up stored), in order. Failures are logged, never fatal.
    fn flush(&self, mut state: MutexGuard<'_, State>) {
        let Some((addr, shown)) = &self.target else {
            return;
        };
        if !state.live || state.pending.is_empty() {
            return;
        }
        let (removals, stores): (Vec<Op>, Vec<Op>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|op| matches!(op, Op::Remove { .. }));
        let (mut stored, mut removed) = (Vec::new(), Vec::new());
        for op in removals.into_iter().chain(stores) {
            let (message, fd, name) = match &op {
                Op::Remove { name } => (format!("FDSTOREREMOVE=1\nFDNAME={name}"), None, name),
                Op::Store { name, fd } => (
                    format!("FDSTORE=1\nFDPOLL=0\nFDNAME={name}"),
                    Some(fd),
                    name,
                ),
            };
            match send(addr, &message, fd.map(std::os::fd::AsFd::as_fd)) {
                Ok(()) if fd.is_some() => stored.push(name.clone()),
                Ok(()) => removed.push(name.clone()),
                Err(e) => {
                    tracing::warn!(notify_socket = %shown, fdname = %name, error = %e, "can't update systemd's fd store")
                }
            }
        }
        if !stored.is_empty() || !removed.is_empty() {
            tracing::info!(?stored, ?removed, "systemd fd store updated");
        }
    }
}

/// Where to send, if `NOTIFY_SOCKET` is usable.
fn target(max: u32) -> Option<(SocketAddr, String)> {
    let Some(value) = std::env::var_os(NOTIFY_SOCKET).filter(|v| !v.is_empty()) else {
        tracing::warn!(
            "{FDSTORE} is set but {NOTIFY_SOCKET} is not: listening sockets are not kept in systemd's fd store"
        );
        return None;
    };
    let shown = value.to_string_lossy().into_owned();
    match notify_addr(&value) {
        Ok(addr) => {
            tracing::debug!(max, "listening sockets are kept in systemd's fd store");
            Some((addr, shown))
        }
        Err(e) => {
            tracing::warn!(notify_socket = %shown, error = %e, "NOTIFY_SOCKET is not usable: listening sockets are not kept in systemd's fd store");
            None
        }
    }
}

fn is_socket_kind(kind: FdKind) -> bool {
    matches!(kind, FdKind::Listener | FdKind::Packet)
}

/// Splits what systemd passed: sockets this runtime stored (named `tableflip/<key>`), with
/// their keys, to be claimed like sockets inherited from a previous process; and the rest
/// (a `.socket` unit's, or a stored one whose name is a hash), claimed as activated.
pub(crate) fn split(activated: Vec<Activated>) -> (Vec<(Key, OwnedFd)>, Vec<Activated>) {
    let mut stored = Vec::new();
    let mut rest = Vec::new();
    for a in activated {
        match key_of(&a.name) {
            Some(key) => stored.push((key, a.fd)),
            None => rest.push(a),
        }
    }
    if !stored.is_empty() {
        let keys: Vec<String> = stored.iter().map(|(k, _)| k.to_string()).collect();
        tracing::info!(sockets = ?keys, "systemd handed back sockets from its fd store");
    }
    (stored, rest)
}

/// At this process's first ready: a process started cold is the main process already; a
/// successor becomes it when its parent hands over, and sends its changes once the parent has
/// exited.
pub(crate) fn ready(upgrader: &crate::Upgrader) {
    let store = upgrader.fds().store();
    if !store.is_on() {
        return;
    }
    if !upgrader.has_parent() {
        store.go_live();
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let upgrader = upgrader.clone();
            rt.spawn(async move {
                let _ = upgrader.wait_for_parent().await;
                upgrader.fds().store().go_live();
            });
        }
        Err(_) => {
            tracing::debug!("no tokio runtime: updating systemd's fd store now");
            store.go_live();
        }
    }
}

/// The name a socket is stored under: `tableflip/<kind>/<network>/<address>`, escaped.
pub(crate) fn name_of(key: &Key) -> String {
    let name = format!(
        "{PREFIX}{}/{}/{}",
        key.kind.as_str(),
        escape(&key.network),
        escape(&key.addr)
    );
    if name.len() <= NAME_MAX {
        return name;
    }
    format!("{PREFIX}#{:016x}", fnv1a(key.to_string().as_bytes()))
}

/// The key of a socket stored under `name`, if it is one of this runtime's names and not a
/// hash.
pub(crate) fn key_of(name: &str) -> Option<Key> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let kind = match parts.next()? {
        "listener" => FdKind::Listener,
        "packet" => FdKind::Packet,
        _ => return None,
    };
    let network = unescape(parts.next()?)?;
    let addr = unescape(parts.next()?)?;
    Some(Key::new(kind, &network, &addr))
}

/// Writes `:`, `%`, space, control and non-ASCII bytes as `%XX`: systemd accepts any other
/// ASCII character in a name.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_graphic() && b != b':' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// FNV-1a, 64 bits: a hash that never changes between versions or builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::io::IoSliceMut;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::os::unix::net::UnixDatagram;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
    use proptest::prelude::*;

    use super::*;
    use crate::addr::{Endpoint, Network};
    use crate::net;

    /// systemd's `fdname_is_valid`: ASCII, no control character, no `:`, at most 255 bytes.
    fn systemd_accepts(name: &str) -> bool {
        name.len() <= NAME_MAX && name.bytes().all(|b| (b' '..0x7f).contains(&b) && b != b':')
    }

    #[test]
    fn names_are_the_escaped_key_and_decode_back() {
        let cases = [
            (
                Key::new(FdKind::Listener, "tcp", "127.0.0.1:8080"),
                "tableflip/listener/tcp/127.0.0.1%3A8080",
            ),
            (
                Key::new(FdKind::Listener, "tcp", ":8080"),
                "tableflip/listener/tcp/%3A8080",
            ),
            (
                Key::new(FdKind::Packet, "udp6", "[::1]:53"),
                "tableflip/packet/udp6/[%3A%3A1]%3A53",
            ),
            (
                Key::new(FdKind::Listener, "unix", "/run/my app/50%.sock"),
                "tableflip/listener/unix//run/my%20app/50%25.sock",
            ),
            (
                Key::new(FdKind::Listener, "unix", "@abstract"),
                "tableflip/listener/unix/@abstract",
            ),
        ];
        for (key, name) in cases {
            assert_eq!(name_of(&key), name);
            assert!(systemd_accepts(name), "{name}");
            assert_eq!(key_of(name), Some(key));
        }
    }

    #[test]
    fn names_that_are_not_ours_or_not_keys_decode_to_nothing() {
        for name in [
            "http",
            "stored",
            "tableflip/",
            "tableflip/conn/tcp/x",
            "tableflip/fd/state/",
            "tableflip/listener/tcp",
            "tableflip/listener/tcp/%3",
            "tableflip/listener/tcp/%ZZ",
            "tableflip/listener/tcp/%FF",
            "tableflip/#0123456789abcdef",
        ] {
            assert_eq!(key_of(name), None, "{name}");
        }
    }

    #[test]
    fn a_key_too_long_for_systemd_is_stored_under_a_stable_hash() {
        let path = format!("/run/{}", "d:".repeat(100));
        let key = Key::new(FdKind::Listener, "unix", &path);
        let name = name_of(&key);
        assert!(systemd_accepts(&name), "{name}");
        assert_eq!(name, name_of(&key.clone()));
        assert!(name.starts_with("tableflip/#"), "{name}");
        assert_eq!(key_of(&name), None);
        let other = Key::new(FdKind::Listener, "unix", &format!("{path}x"));
        assert_ne!(name_of(&other), name);
        // The FNV-1a test vector: the hash is the same in every version.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    proptest! {
        #[test]
        fn every_name_is_valid_for_systemd_and_short_ones_round_trip(
            packet in any::<bool>(),
            network in "[a-z0-9]{1,10}",
            addr in "\\PC{0,120}",
        ) {
            let kind = if packet { FdKind::Packet } else { FdKind::Listener };
            let key = Key::new(kind, &network, &addr);
            let name = name_of(&key);
            prop_assert!(systemd_accepts(&name), "{:?}", name);
            if !name.starts_with("tableflip/#") {
                prop_assert_eq!(key_of(&name), Some(key));
            }
        }
    }

    /// A notify socket of our own, and a store that sends to it.
    fn stand_in(tag: &str) -> (UnixDatagram, FdStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("tf-fdstore-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let store = FdStore {
            target: Some((notify_addr(path.as_os_str()).unwrap(), String::new())),
            state: Mutex::default(),
        };
        (rx, store, dir)
    }

    /// One datagram and the descriptors that came with it (closed by [`close_all`]).
    fn receive(rx: &UnixDatagram) -> (String, Vec<RawFd>) {
        let mut buf = [0u8; 512];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<UnixAddr>(rx.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .expect("a notification");
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(raw);
            }
        }
        let len = msg.bytes;
        (String::from_utf8_lossy(&buf[..len]).into_owned(), fds)
    }

    fn close_all(fds: Vec<RawFd>) {
        for fd in fds {
            let _ = nix::unistd::close(fd);
        }
    }

    fn inode(fd: RawFd) -> u64 {
        nix::sys::stat::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn changes_wait_until_live_then_removals_go_first() {
        let (rx, store, dir) = stand_in("live");
        let tcp =
            net::bind_listener(&Endpoint::new(Network::Tcp, "127.0.0.1:0").unwrap(), None).unwrap();
        let addr = net::local_address(tcp.as_fd()).unwrap();
        let key = Key::new(FdKind::Listener, "tcp", &addr);
        let gone = Key::new(FdKind::Listener, "tcp", "127.0.0.1:1");
        store.stored(&key, tcp.as_fd(), false);
        store.removed(&gone);
        // Files and connections are never stored.
        store.stored(&Key::file("state"), tcp.as_fd(), false);
        store.removed(&Key::new(FdKind::Conn, "tcp", "x"));
        rx.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(rx.recv(&mut buf).is_err(), "nothing is sent before live");
        rx.set_nonblocking(false).unwrap();

        store.go_live();
        let (text, fds) = receive(&rx);
        assert_eq!(
            text,
            "FDSTOREREMOVE=1\nFDNAME=tableflip/listener/tcp/127.0.0.1%3A1"
        );
        assert!(fds.is_empty());
        let (text, fds) = receive(&rx);
        assert_eq!(
            text,
            format!("FDSTORE=1\nFDPOLL=0\nFDNAME={}", name_of(&key))
        );
        assert_eq!(fds.len(), 1);
        assert_eq!(inode(fds[0]), inode(tcp.as_raw_fd()), "the very socket");
        close_all(fds);

        // Live: at once; a replacement removes the name first.
        store.stored(&key, tcp.as_fd(), true);
        let (text, _) = receive(&rx);
        assert!(text.starts_with("FDSTOREREMOVE=1\n"), "{text}");
        let (text, fds) = receive(&rx);
        assert!(text.starts_with("FDSTORE=1\n"), "{text}");
        assert_eq!(fds.len(), 1);
        close_all(fds);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unclaimed_sockets_from_the_store_are_removed_and_others_left_alone() {
        let (rx, store, dir) = stand_in("unclaimed");
        store.go_live();
        let sock = |name: &str| Activated {
            name: name.into(),
            fd: net::bind_listener(&Endpoint::new(Network::Tcp, "127.0.0.1:0").unwrap(), None)
                .unwrap(),
        };
        store.unclaimed(&[sock("http"), sock("tableflip/#00000000000000aa")]);
        let (text, _) = receive(&rx);
        assert_eq!(text, "FDSTOREREMOVE=1\nFDNAME=tableflip/#00000000000000aa");
        rx.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            rx.recv(&mut buf).is_err(),
            "a .socket unit's socket is not ours"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn split_takes_our_names_as_inherited_keys() {
        let ours =
            net::bind_listener(&Endpoint::new(Network::Tcp, "127.0.0.1:0").unwrap(), None).unwrap();
        let addr = net::local_address(ours.as_fd()).unwrap();
        let key = Key::new(FdKind::Listener, "tcp", &addr);
        let theirs =
            net::bind_listener(&Endpoint::new(Network::Tcp, "127.0.0.1:0").unwrap(), None).unwrap();
        let (stored, rest) = split(vec![
            Activated {
                name: "http".into(),
                fd: theirs,
            },
            Activated {
                name: name_of(&key),
                fd: ours,
            },
        ]);
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0, key);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "http");
    }

    #[test]
    fn an_off_store_sends_nothing() {
        let store = FdStore::off();
        assert!(!store.is_on());
        let tcp =
            net::bind_listener(&Endpoint::new(Network::Tcp, "127.0.0.1:0").unwrap(), None).unwrap();
        store.stored(&Key::new(FdKind::Listener, "tcp", "x"), tcp.as_fd(), false);
        store.go_live();
        assert!(store.state().pending.is_empty());
    }
}
