//! systemd: readiness notifications (`sd_notify`) and socket activation (`sd_listen_fds`).
//!
//! Notifications go to `NOTIFY_SOCKET`, if set, in the order that keeps systemd tracking the
//! right process across upgrades (see `Upgrader`): `READY=1` at a cold start;
//! `RELOADING=1` when an upgrade starts; `MAINPID=<successor>` with `READY=1` once the
//! successor is ready, then a `BARRIER=1` round before this process drains; `READY=1` with a
//! `STATUS=` line after a failed upgrade; `STOPPING=1` at a graceful stop. Besides, what the
//! lifecycle decides (docs/lifecycle.md, "Telling systemd"): `STATUS=` lines for a person,
//! `EXTEND_TIMEOUT_USEC=` while warming up, `WATCHDOG=1` pings, `MAINPIDFD=1` with the
//! successor's pidfd (opt-in, `TABLEFLIP_MAINPIDFD=1`, systemd >= 255). Failures are
//! logged, never fatal. `NOTIFY_SOCKET` stays in the environment: successors need it.
//!
//! Socket activation: the sockets systemd passed (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`) are taken at start-up and claimed by declared listeners, by name or by
//! address and socket type.

use std::ffi::OsStr;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
use tokio::io::AsyncReadExt;

use crate::addr::Endpoint;
use crate::error::Error;
use crate::{net, sys};

pub(crate) mod fdstore;

/// The variable that points to systemd's notification socket.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// How long one notification may block on a full socket buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the serving process waits for systemd to answer `BARRIER=1`.
pub(crate) const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;
/// More activated sockets than this is a broken environment, not a configuration.
const MAX_LISTEN_FDS: usize = 4096;

/// `TABLEFLIP_MAINPIDFD=1`: the handover also passes the successor's pidfd (`MAINPIDFD=1`).
pub(crate) const MAINPIDFD_VAR: &str = "TABLEFLIP_MAINPIDFD";
/// The watchdog interval systemd asks for (`WatchdogSec=`), in microseconds.
pub(crate) const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The process the watchdog interval is meant for.
pub(crate) const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Sends notifications to systemd, if `NOTIFY_SOCKET` is set.
pub(crate) struct Notifier {
    /// Where to send, and the variable's value for the log; `None` when not under systemd.
    target: Option<(SocketAddr, String)>,
    /// Pass the successor's pidfd with `MAINPIDFD=1` at the handover (systemd >= 255).
    mainpidfd: bool,
    /// How often systemd wants `WATCHDOG=1` (`None`: no watchdog).
    watchdog: Option<Duration>,
    /// The last `STATUS=` sent, not to send the same line again.
    status: std::sync::Mutex<String>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). An unusable
    /// value is logged once and notifications are off.
    pub(crate) fn from_env() -> Notifier {
        let off = Notifier {
            target: None,
            mainpidfd: false,
            watchdog: None,
            status: Default::default(),
        };
        let Some(value) = std::env::var_os(NOTIFY_SOCKET).filter(|v| !v.is_empty()) else {
            return off;
        };
        let shown = value.to_string_lossy().into_owned();
        match notify_addr(&value) {
            Ok(addr) => {
                tracing::debug!(notify_socket = %shown, "will notify systemd");
                Notifier {
                    target: Some((addr, shown)),
                    mainpidfd: std::env::var(MAINPIDFD_VAR).is_ok_and(|v| v == "1"),
                    ..off
                }
            }
            Err(e) => {
                tracing::warn!(notify_socket = %shown, error = %e, "NOTIFY_SOCKET is not usable; not notifying systemd");
                off
            }
        }
    }

    /// A notifier that sends to `target` (tests).
    #[cfg(test)]
    fn to(target: Option<(SocketAddr, String)>) -> Notifier {
        Notifier {
            target,
            mainpidfd: false,
            watchdog: None,
            status: Default::default(),
        }
    }

    /// Reads `WATCHDOG_USEC` and `WATCHDOG_PID`: the watchdog is on when the interval is set
    /// and meant for this process — `WATCHDOG_PID` unset or this pid, or this process is a
    /// successor (`successor`), which inherited its parent's variables along with its
    /// place as the service's main process.
    pub(crate) fn with_watchdog_from_env(mut self, successor: bool) -> Notifier {
        if self.target.is_none() {
            return self;
        }
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let for_us = match var(WATCHDOG_PID) {
            None => true,
            Some(pid) => successor || pid.trim().parse::<u32>().ok() == Some(std::process::id()),
        };
        self.watchdog = match var(WATCHDOG_USEC).map(|v| v.trim().parse::<u64>()) {
            None => None,
            Some(Ok(0)) => None,
            Some(Ok(usec)) if for_us => {
                tracing::debug!(watchdog_usec = usec, "systemd's watchdog is on: pinging it");
                Some(Duration::from_micros(usec))
            }
            Some(Ok(_)) => {
                tracing::debug!("{WATCHDOG_USEC} is meant for another process ({WATCHDOG_PID})");
                None
            }
            Some(Err(_)) => {
                tracing::warn!("{WATCHDOG_USEC} is not a number: not pinging systemd's watchdog");
                None
            }
        };
        self
    }

    /// The watchdog interval, if systemd wants pings.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `WATCHDOG=1`: this process is alive (and its health check passed).
    pub(crate) fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.notify("WATCHDOG=1");
        }
    }

    /// `STATUS=<line>`, unless it is the line sent last.
    pub(crate) fn status(&self, line: &str) {
        if self.target.is_none() {
            return;
        }
        let line = line.replace('\n', " ");
        let mut last = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if *last != line && self.notify(&format!("STATUS={line}")) {
            *last = line;
        }
    }

    /// `EXTEND_TIMEOUT_USEC=`: the start or reload in progress may take `by` longer from
    /// now, past the unit's `TimeoutStartSec=`.
    pub(crate) fn extend_timeout(&self, by: Duration) {
        if self.target.is_some() {
            self.notify(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
        }
    }

    /// Is there a systemd to notify?
    pub(crate) fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: a process started cold is ready.
    pub(crate) fn ready(&self) {
        self.notify("READY=1");
    }

    /// `RELOADING=1` with the current `CLOCK_MONOTONIC` time: an upgrade starts.
    pub(crate) fn reloading(&self) {
        if self.target.is_some() {
            self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        }
    }

    /// The successor `pid` is ready: `MAINPID=<pid>` and `READY=1` in one message, with
    /// the successor's status line (this process is no longer the main one afterwards: its
    /// own messages would be refused); then a `BARRIER=1` round, so that systemd knows the
    /// new main process before this one exits.
    ///
    /// With `TABLEFLIP_MAINPIDFD=1` and a `pidfd` for the successor, the message also says
    /// `MAINPIDFD=1` and carries the pidfd (`SCM_RIGHTS`): systemd >= 255 then follows the
    /// process itself, which a reused pid can never be mistaken for. Older systemd ignores
    /// `MAINPIDFD=1` (it closes the descriptor, with a warning) and uses `MAINPID=`.
    pub(crate) async fn handover(&self, pid: u32, pidfd: Option<BorrowedFd<'_>>, status: &str) {
        let Some((addr, shown)) = &self.target else {
            return;
        };
        let status = status.replace('\n', " ");
        let pidfd = pidfd.filter(|_| self.mainpidfd);
        let state = match pidfd {
            Some(_) => format!("MAINPID={pid}\nMAINPIDFD=1\nREADY=1\nSTATUS={status}"),
            None => format!("MAINPID={pid}\nREADY=1\nSTATUS={status}"),
        };
        match send(addr, &state, pidfd) {
            Ok(()) => {
                tracing::debug!(state, "notified systemd");
                *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
                self.barrier(BARRIER_TIMEOUT).await;
            }
            Err(e) => {
                tracing::warn!(notify_socket = %shown, state, error = %e, "can't notify systemd")
            }
        }
    }

    /// `READY=1` and `STATUS=upgrade failed: <cause>`: the upgrade failed, this process serves on.
    pub(crate) fn upgrade_failed(&self, cause: &str) {
        let cause = cause.replace('\n', " ");
        let status = format!("upgrade failed: {cause}");
        if self.notify(&format!("READY=1\nSTATUS={status}")) {
            *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
        }
    }

    /// `STOPPING=1`: a graceful stop begins.
    pub(crate) fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// Sends `state`; returns whether it was sent. Failures are logged.
    fn notify(&self, state: &str) -> bool {
        let Some((addr, shown)) = &self.target else {
            return false;
        };
        match send(addr, state, None) {
            Ok(()) => {
                tracing::debug!(state, "notified systemd");
                true
            }
            Err(e) => {
                tracing::warn!(notify_socket = %shown, state, error = %e, "can't notify systemd");
                false
            }
        }
    }

    /// Sends `BARRIER=1` with the write end of a pipe and waits (at most `timeout`) until
    /// systemd has closed it: everything sent before has then been processed.
    async fn barrier(&self, timeout: Duration) {
        let Some((addr, shown)) = &self.target else {
            return;
        };
        let round = async {
            let (read, write) = crate::sys::pipe_cloexec()?;
            send(addr, "BARRIER=1", Some(write.as_fd()))?;
            drop(write);
            let mut read = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
            let mut buf = [0u8; 64];
            let hangup = async {
                while read.read(&mut buf).await? != 0 {}
                Ok::<(), io::Error>(())
            };
            tokio::time::timeout(timeout, hangup).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )
            })?
        };
        match round.await {
            Ok(()) => tracing::debug!("systemd answered BARRIER=1"),
            Err(e) => {
                tracing::warn!(notify_socket = %shown, error = %e, "BARRIER=1 round with systemd failed")
            }
        }
    }
}

/// The socket address `NOTIFY_SOCKET` names.
fn notify_addr(value: &OsStr) -> io::Result<SocketAddr> {
    match value.as_bytes() {
        [b'/', ..] => SocketAddr::from_pathname(Path::new(value)),
        [b'@', name @ ..] => abstract_addr(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "expected an absolute path or an @abstract name",
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// Sends one datagram, with `fd` attached (`SCM_RIGHTS`) if given.
fn send(addr: &SocketAddr, state: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    sock.connect_addr(addr)?;
    let sent = match fd {
        None => sock.send(state.as_bytes())?,
        Some(fd) => {
            let fds = [fd.as_raw_fd()];
            sendmsg::<UnixAddr>(
                sock.as_raw_fd(),
                &[IoSlice::new(state.as_bytes())],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )?
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", state.len()),
        ));
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd wants it in `MONOTONIC_USEC=`.
fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}

/// A socket systemd passed, with its `FileDescriptorName=`.
pub(crate) struct Activated {
    /// The name (`"unknown"` if systemd gave none).
    pub(crate) name: String,
    /// The socket.
    pub(crate) fd: OwnedFd,
}

impl Activated {
    /// `name (fd N, address)`, for the log.
    pub(crate) fn describe(&self) -> String {
        let addr = net::local_address(self.fd.as_fd()).unwrap_or_else(|e| e.to_string());
        format!("{} (fd {}, {addr})", self.name, self.fd.as_raw_fd())
    }
}

/// What start-up found of socket activation: the sockets, and something for the log once a
/// subscriber exists.
#[derive(Default)]
pub(crate) struct Activation {
    /// The activated sockets, in systemd's order.
    pub(crate) sockets: Vec<Activated>,
    /// A note for the log: `(true, msg)` for a warning, `(false, msg)` for debug.
    pub(crate) note: Option<(bool, String)>,
}

impl Activation {
    /// Logs the note, if any.
    pub(crate) fn log_note(&self) {
        match &self.note {
            Some((true, msg)) => tracing::warn!("{msg}"),
            Some((false, msg)) => tracing::debug!("{msg}"),
            None => {}
        }
    }
}

/// What the variables ask for: how many sockets, their names; or why they are ignored.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Not activated.
    None,
    /// Ignored: `(warn, why)`.
    Ignore(bool, String),
    /// Take fds 3.. with these names; a warning about the names, if they did not fit.
    Take(Vec<String>, Option<String>),
}

/// Reads `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` (as captured) for process `pid`.
fn plan(vars: &[Option<String>; 3], pid: u32) -> Plan {
    let [fds, listen_pid, names] = vars;
    let Some(listen_pid) = listen_pid else {
        return match fds {
            Some(_) => Plan::Ignore(
                false,
                "LISTEN_FDS is set without LISTEN_PID: ignored".into(),
            ),
            None => Plan::None,
        };
    };
    match listen_pid.trim().parse::<u32>() {
        Ok(p) if p == pid => {}
        Ok(p) => {
            return Plan::Ignore(
                false,
                format!(
                    "LISTEN_PID={p} is another process (this is {pid}): socket activation ignored"
                ),
            );
        }
        Err(_) => {
            return Plan::Ignore(
                true,
                format!("LISTEN_PID={listen_pid:?} is not a pid: socket activation ignored"),
            );
        }
    }
    let n = match fds.as_deref().map(|v| v.trim().parse::<usize>()) {
        Some(Ok(n)) if n <= MAX_LISTEN_FDS => n,
        Some(_) | None => {
            return Plan::Ignore(
                true,
                format!("LISTEN_FDS={fds:?} is not a number of sockets: socket activation ignored"),
            );
        }
    };
    if n == 0 {
        return Plan::None;
    }
    let mut given: Vec<String> = match names {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => Vec::new(),
    };
    let warning = (names.is_some() && given.len() != n).then(|| {
        format!(
            "LISTEN_FDNAMES={names:?} names {} socket(s), LISTEN_FDS={n}: the rest are \"unknown\"",
            given.len()
        )
    });
    given.resize(n, "unknown".to_owned());
    for name in &mut given {
        if name.is_empty() {
            *name = "unknown".to_owned();
        }
    }
    Plan::Take(given, warning)
}

/// Takes the sockets systemd passed to this process, from fd 3 on.
///
/// Runs at start-up, before inherited descriptors are marked close-on-exec and before any
/// thread exists; `vars` are `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` as they were.
/// Nothing is logged yet (no subscriber exists): notes are kept for later.
pub(crate) fn take_activated(vars: &[Option<String>; 3]) -> Activation {
    let (names, mut note) = match plan(vars, std::process::id()) {
        Plan::None => return Activation::default(),
        Plan::Ignore(warn, msg) => {
            return Activation {
                sockets: Vec::new(),
                note: Some((warn, msg)),
            };
        }
        Plan::Take(names, warning) => (names, warning.map(|w| (true, w))),
    };
    let mut sockets = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let fd = LISTEN_FDS_START + i as RawFd;
        match sys::take_inherited_fd(fd) {
            Ok(Some(fd)) => sockets.push(Activated { name, fd }),
            Ok(None) | Err(_) => missing.push(fd),
        }
    }
    if !missing.is_empty() {
        let msg = format!("socket activation: fds {missing:?} are not open; skipped them");
        note = Some((
            true,
            note.map_or(msg.clone(), |(_, n)| format!("{n}; {msg}")),
        ));
    }
    Activation { sockets, note }
}

/// Claims an activated socket for a listener on `network` at `addr`: the first one named
/// `name` that fits the network, else the first one bound to `addr` with the network's
/// socket type. A socket named `name` that does not fit is an error.
pub(crate) fn claim(
    activated: &mut Vec<Activated>,
    name: Option<&str>,
    endpoint: &Endpoint,
) -> Result<Option<OwnedFd>, Error> {
    let network = endpoint.network();
    if let Some(name) = name {
        let mut misfit = None;
        for (pos, a) in activated.iter().enumerate().filter(|(_, a)| a.name == name) {
            match net::check_socket(a.fd.as_fd(), network) {
                Ok(()) => return Ok(Some(activated.remove(pos).fd)),
                Err(msg) => {
                    misfit.get_or_insert(msg);
                }
            }
        }
        if let Some(msg) = misfit {
            return Err(Error::WrongSocket {
                what: format!("systemd-activated socket {name:?}"),
                msg,
            });
        }
    }
    Ok(activated
        .iter()
        .position(|a| net::socket_matches(a.fd.as_fd(), endpoint))
        .map(|pos| activated.remove(pos).fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Network;

    fn ep(network: Network, addr: &str) -> Endpoint {
        Endpoint::new(network, addr).unwrap()
    }

    fn vars(fds: Option<&str>, pid: Option<&str>, names: Option<&str>) -> [Option<String>; 3] {
        [fds, pid, names].map(|v| v.map(str::to_owned))
    }

    #[test]
    fn no_variables_means_no_activation() {
        assert_eq!(plan(&vars(None, None, None), 10), Plan::None);
        assert_eq!(plan(&vars(Some("0"), Some("10"), None), 10), Plan::None);
    }

    #[test]
    fn another_pid_is_ignored_quietly() {
        let p = plan(&vars(Some("2"), Some("11"), Some("a:b")), 10);
        assert!(
            matches!(p, Plan::Ignore(false, ref m) if m.contains("LISTEN_PID=11")),
            "{p:?}"
        );
        assert!(matches!(
            plan(&vars(Some("1"), None, None), 10),
            Plan::Ignore(false, _)
        ));
    }

    #[test]
    fn malformed_values_are_ignored_with_a_warning() {
        for v in [
            vars(Some("1"), Some("x"), None),
            vars(Some("x"), Some("10"), None),
            vars(None, Some("10"), None),
            vars(Some("-1"), Some("10"), None),
            vars(Some("100000"), Some("10"), None),
        ] {
            assert!(matches!(plan(&v, 10), Plan::Ignore(true, _)), "{v:?}");
        }
    }

    #[test]
    fn names_come_from_listen_fdnames() {
        assert_eq!(
            plan(&vars(Some("2"), Some("10"), Some("http:admin")), 10),
            Plan::Take(vec!["http".into(), "admin".into()], None)
        );
        assert_eq!(
            plan(&vars(Some("2"), Some("10"), None), 10),
            Plan::Take(vec!["unknown".into(), "unknown".into()], None)
        );
        let Plan::Take(names, Some(_)) = plan(&vars(Some("3"), Some("10"), Some("a::c:d")), 10)
        else {
            panic!("a warning about the names");
        };
        assert_eq!(names, ["a", "unknown", "c"]);
    }

    #[test]
    fn notify_socket_forms() {
        assert!(notify_addr(OsStr::new("/run/systemd/notify")).is_ok());
        assert!(notify_addr(OsStr::new("relative/path")).is_err());
        assert!(notify_addr(OsStr::new("")).is_err());
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let a = notify_addr(OsStr::new("@tf-test")).unwrap();
            assert_eq!(a.as_abstract_name(), Some(&b"tf-test"[..]));
        }
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("tf-sd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(Some((
            notify_addr(path.as_os_str()).unwrap(),
            String::new(),
        )));
        n.ready();
        n.stopping();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
        n.reloading();
        let len = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        let usec = msg.strip_prefix("RELOADING=1\nMONOTONIC_USEC=").unwrap();
        assert!(usec.parse::<u64>().unwrap() > 0);
        let _ = std::fs::remove_dir_all(&dir);

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("tf-sd-test-{}", std::process::id());
            let rx =
                UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
            let n = Notifier::to(Some((
                notify_addr(OsStr::new(&format!("@{name}"))).unwrap(),
                name,
            )));
            n.upgrade_failed("new process 7 exited\nbadly");
            let len = rx.recv(&mut buf).unwrap();
            assert_eq!(
                &buf[..len],
                b"READY=1\nSTATUS=upgrade failed: new process 7 exited badly"
            );
        }
    }

    #[test]
    fn claims_by_name_then_by_address_and_rejects_a_misfit_by_name() {
        let tcp = net::bind_listener(&ep(Network::Tcp, "127.0.0.1:0"), None).unwrap();
        let tcp_addr = net::local_address(tcp.as_fd()).unwrap();
        let udp = net::bind_packet(&ep(Network::Udp, "127.0.0.1:0"), None).unwrap();
        let udp_addr = net::local_address(udp.as_fd()).unwrap();
        let mut activated = vec![
            Activated {
                name: "dns".into(),
                fd: udp,
            },
            Activated {
                name: "http".into(),
                fd: tcp,
            },
        ];
        // A name that fits nothing: an error naming the socket.
        let err = claim(
            &mut activated,
            Some("dns"),
            &ep(Network::Tcp, "127.0.0.1:1"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"dns\"") && err.to_string().contains("SOCK_DGRAM"),
            "{err}"
        );
        // No such name, wrong address: nothing.
        assert!(
            claim(
                &mut activated,
                Some("web"),
                &ep(Network::Tcp, "127.0.0.1:1")
            )
            .unwrap()
            .is_none()
        );
        // By address and type, whatever the name.
        let fd = claim(&mut activated, Some("web"), &ep(Network::Udp, &udp_addr))
            .unwrap()
            .unwrap();
        assert_eq!(net::local_address(fd.as_fd()).unwrap(), udp_addr);
        // By name, whatever the address.
        let fd = claim(
            &mut activated,
            Some("http"),
            &ep(Network::Tcp, "127.0.0.1:1"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(net::local_address(fd.as_fd()).unwrap(), tcp_addr);
        assert!(activated.is_empty());
    }

    #[test]
    fn no_notify_socket_sends_nothing() {
        let n = Notifier::to(None);
        assert!(!n.notify("READY=1"));
    }
}
