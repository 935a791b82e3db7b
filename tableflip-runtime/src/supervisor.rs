//! PID 1 in a container: a tiny supervisor, so that an upgrade does not end the container.
//!
//! When a service runs as PID 1 (`docker run` without `--init`), its own exit ends the
//! container, and with it every process in it: an upgrade, which ends the old process once
//! the new one serves, would take the new one down too. So when
//! [`init`](crate::init) finds the process is PID 1, the process becomes a supervisor instead:
//!
//! - it starts the service again as its child (the same program, argv\[0\] and arguments,
//!   directory and environment; in a process group of its own, so that a terminal's Ctrl-C
//!   reaches the generations once, through the supervisor), with a `NOTIFY_SOCKET` of its own
//!   (an abstract unix socket), and follows the service's notifications the way systemd
//!   does: the process it started is the main one, `MAINPID=` moves that to a successor at
//!   every upgrade, `READY=1` says it serves, `BARRIER=1` is answered. The runtime sends
//!   exactly these under systemd, so one code path serves both;
//! - it forwards signals: `SIGTERM` and `SIGINT` (a stop: `docker stop`, Ctrl-C) to every
//!   generation still running (the serving one drains; one still draining after an upgrade
//!   goes on draining, a second stop signal forces both, as under systemd's
//!   `KillMode=control-group`); any other signal (`SIGHUP`: `docker kill -s HUP` upgrades) to
//!   the main process, once it has said `READY=1` (before, it is dropped with a line on
//!   stderr, as systemd refuses a reload while a service starts);
//! - it reaps every process that ends up its child: each generation whose parent exited is
//!   re-parented to PID 1, and so is anything the service leaves behind. No zombie stays;
//! - once no generation is left, it exits with the status of the last main process (its exit
//!   code, or 128 + the signal that killed it), which ends the container.
//!
//! Messages are taken from generations only (the processes that were main at some point):
//! after a handover the previous process may still start a replacement for a successor that
//! crashed, and names it with `MAINPID=`.
//!
//! `TABLEFLIP_SUPERVISOR=0` opts out (the service then serves as PID 1 itself, and an upgrade
//! ends the container): for images that run their own init (`tini`, `dumb-init`,
//! `docker run --init`), where the service is not PID 1 anyway, nothing changes.
//!
//! Linux only (PID namespaces); elsewhere [`supervise_if_pid1`] does nothing.

use std::collections::BTreeSet;

use nix::sys::signal::Signal;

/// `TABLEFLIP_SUPERVISOR=0` keeps a PID 1 service from becoming a supervisor.
pub(crate) const OPT_OUT: &str = "TABLEFLIP_SUPERVISOR";

/// Runs the supervisor if this process is PID 1 (and the only thread, and not opted out):
/// then it never returns. Called first thing by [`init`](crate::init).
pub(crate) fn supervise_if_pid1() {
    #[cfg(target_os = "linux")]
    if let Some(code) = linux::run_if_pid1() {
        std::process::exit(code);
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The exit code a shell would report: the code, or 128 + the signal.
    fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// What the supervisor knows about the service: the generations (every process that was
/// the main one and still runs), the main process, whether it said ready, and how the last
/// main process ended.
#[derive(Debug)]
struct Generations {
    main: Option<i32>,
    alive: BTreeSet<i32>,
    ready: bool,
    last: Option<Exit>,
}

impl Generations {
    /// The first generation, started by the supervisor: the main process.
    fn new(first: i32) -> Generations {
        Generations {
            main: Some(first),
            alive: BTreeSet::from([first]),
            ready: false,
            last: None,
        }
    }

    /// A notification `text` from `pid`; `exists` tells whether a pid names a live process.
    /// Returns lines for the log.
    fn notified(&mut self, pid: i32, text: &str, exists: impl Fn(i32) -> bool) -> Vec<String> {
        if !self.alive.contains(&pid) {
            return vec![format!(
                "ignored a notification from pid {pid}: not a generation of the service"
            )];
        }
        let mut log = Vec::new();
        let mut ready = false;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("MAINPID", value)) => match value.trim().parse::<i32>() {
                    Ok(new) if new > 1 && exists(new) => {
                        if self.main != Some(new) {
                            log.push(format!("main process is now {new} (was {pid})"));
                        }
                        self.main = Some(new);
                        self.alive.insert(new);
                        self.ready = false;
                    }
                    _ => log.push(format!(
                        "ignored MAINPID={value} from {pid}: no such process"
                    )),
                },
                Some(("READY", "1")) => ready = true,
                _ => {}
            }
        }
        if ready {
            self.ready = true;
        }
        log
    }

    /// Where `sig` goes: a stop signal to every generation, any other to the ready main
    /// process; or why it goes nowhere.
    fn targets(&self, sig: Signal) -> Result<Vec<i32>, String> {
        if matches!(sig, Signal::SIGTERM | Signal::SIGINT) {
            return Ok(self.alive.iter().copied().collect());
        }
        match self.main {
            Some(main) if self.ready => Ok(vec![main]),
            Some(main) => Err(format!(
                "{sig} dropped: the service ({main}) is not ready yet"
            )),
            None => Err(format!("{sig} dropped: no main process")),
        }
    }

    /// `pid` was reaped. Returns the supervisor's exit code once no generation is left.
    fn reaped(&mut self, pid: i32, exit: Exit) -> Option<i32> {
        if !self.alive.remove(&pid) {
            return None;
        }
        if self.main == Some(pid) {
            self.last = Some(exit);
            self.main = None;
            self.ready = false;
        }
        self.alive
            .is_empty()
            .then(|| self.last.map_or(0, Exit::code))
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::io::{IoSliceMut, Write};
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::{SigSet, Signal, kill};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg, setsockopt, sockopt,
    };
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;

    use super::{Exit, Generations, OPT_OUT};
    use crate::systemd::NOTIFY_SOCKET;

    /// The signals forwarded to the service (`SIGCHLD` is the supervisor's own).
    const FORWARDED: [Signal; 9] = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGTERM,
        Signal::SIGWINCH,
        Signal::SIGPWR,
    ];

    /// How many "ignored a notification" lines are written at most.
    const MAX_IGNORED_LOGGED: u32 = 10;

    /// One line on stderr; never fails, never panics (PID 1 must not).
    fn say(msg: &str) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "tableflip supervisor (pid 1): {msg}"
        );
    }

    /// Runs the supervisor if this process should; returns its exit code when the last
    /// generation has exited, or `None` if it does not supervise.
    pub(super) fn run_if_pid1() -> Option<i32> {
        if std::process::id() != 1 {
            return None;
        }
        if std::env::var_os(OPT_OUT).is_some_and(|v| v == "0") {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                say(&format!(
                    "{OPT_OUT}=0: serving as PID 1 without a supervisor; an upgrade will end \
                     the container"
                ))
            });
            return None;
        }
        if std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() > 1) {
            say(
                "not supervising: other threads already run (call tableflip::init() first \
                 thing in main, before any runtime starts); an upgrade will end the container",
            );
            return None;
        }
        Some(match run() {
            Ok(code) => code,
            Err(e) => {
                say(&format!("can't supervise: {e}"));
                1
            }
        })
    }

    fn run() -> std::io::Result<i32> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for sig in FORWARDED {
            mask.add(sig);
        }
        // Blocked, the signals queue for the signalfd (also for PID 1, which the kernel
        // otherwise spares signals it has no handler for). The service starts with none
        // blocked (`sys::unblock_signals_in_child`).
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        let (socket, name) = notify_socket()?;

        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_default();
        let first = start(&argv0, args.collect(), &name)?;
        say(&format!(
            "started the service as pid {first}; signals go to it, orphans are reaped here \
             ({OPT_OUT}=0 to run without this supervisor)"
        ));
        let mut gens = Generations::new(first);
        let mut ignored = 0;
        loop {
            let mut fds = [
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            // Notifications first: a MAINPID= sent before the old main process exited is
            // known when its exit is reaped.
            while let Some((pid, text)) = receive(&socket) {
                for line in gens.notified(pid, &text, exists) {
                    if line.starts_with("ignored a notification") {
                        ignored += 1;
                        if ignored > MAX_IGNORED_LOGGED {
                            continue;
                        }
                    }
                    say(&line);
                }
            }
            while let Ok(Some(info)) = signals.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if sig == Signal::SIGCHLD {
                    continue;
                }
                match gens.targets(sig) {
                    Ok(pids) => {
                        for pid in pids {
                            let _ = kill(Pid::from_raw(pid), sig);
                        }
                    }
                    Err(why) => say(&why),
                }
            }
            // Reap everything that ended, generation or not (SIGCHLD coalesces).
            loop {
                let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                    Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                };
                if let Some(code) = gens.reaped(pid.as_raw(), exit) {
                    say(&format!(
                        "the last generation ({pid}) exited ({exit:?}); exiting with {code}"
                    ));
                    return Ok(code);
                }
            }
        }
    }

    /// Does `pid` name a live process?
    fn exists(pid: i32) -> bool {
        kill(Pid::from_raw(pid), None).is_ok()
    }

    /// A datagram socket in the abstract namespace, with a random name, passing credentials.
    fn notify_socket() -> std::io::Result<(UnixDatagram, String)> {
        let mut last = None;
        for attempt in 0..16u64 {
            let name = format!("tableflip-supervisor/{:016x}", random(attempt));
            match UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?) {
                Ok(sock) => {
                    setsockopt(&sock, sockopt::PassCred, &true)?;
                    sock.set_nonblocking(true)?;
                    return Ok((sock, format!("@{name}")));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()))
    }

    /// 64 random bits, from std's randomly seeded hasher.
    fn random(salt: u64) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    }

    /// Starts the service: argv\[0\] as given (a bare name is looked up in `PATH`, as the
    /// runtime does at every upgrade), falling back to this very executable.
    fn start(argv0: &OsString, args: Vec<OsString>, notify: &str) -> std::io::Result<i32> {
        let spawn = |program: &std::ffi::OsStr| {
            let mut cmd = Command::new(program);
            // A process group of its own: a terminal's Ctrl-C (`docker run -it`) reaches the
            // supervisor alone, which forwards it once; the generations would otherwise get
            // it twice, and a second stop signal forces the exit.
            CommandExt::arg0(&mut cmd, argv0).process_group(0);
            cmd.args(&args).env(NOTIFY_SOCKET, notify);
            crate::sys::unblock_signals_in_child(&mut cmd);
            cmd.spawn()
        };
        let child = match spawn(argv0) {
            Ok(child) => child,
            Err(e) => {
                let exe = std::env::current_exe().map_err(|_| e)?;
                spawn(exe.as_os_str())?
            }
        };
        Ok(child.id() as i32)
    }

    /// One notification, if one is waiting: the sender's pid and the text. Descriptors that
    /// came with it are closed (that answers `BARRIER=1`: everything sent before it has been
    /// handled, in order, by this one thread).
    fn receive(socket: &UnixDatagram) -> Option<(i32, String)> {
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(UnixCredentials, [RawFd; 16]);
        let msg = recvmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let mut pid = 0;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::ScmCredentials(cred) => pid = cred.pid(),
                    ControlMessageOwned::ScmRights(raw) => fds.extend(raw),
                    _ => {}
                }
            }
        }
        let len = msg.bytes;
        for fd in fds {
            let _ = nix::unistd::close(fd);
        }
        Some((pid, String::from_utf8_lossy(&buf[..len]).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(_: i32) -> bool {
        true
    }

    #[test]
    fn mainpid_moves_the_main_process_and_ready_arms_forwarding() {
        let mut g = Generations::new(10);
        assert!(g.targets(Signal::SIGHUP).is_err(), "not ready yet");
        assert_eq!(g.targets(Signal::SIGTERM), Ok(vec![10]));
        assert!(g.notified(10, "READY=1", live).is_empty());
        assert_eq!(g.targets(Signal::SIGHUP), Ok(vec![10]));
        g.notified(10, "RELOADING=1\nMONOTONIC_USEC=5", live);
        let log = g.notified(10, "MAINPID=20\nREADY=1", live);
        assert_eq!(log, ["main process is now 20 (was 10)"]);
        assert_eq!(g.targets(Signal::SIGHUP), Ok(vec![20]));
        // A stop reaches every generation: the old one goes on draining.
        assert_eq!(g.targets(Signal::SIGTERM), Ok(vec![10, 20]));
        assert_eq!(g.targets(Signal::SIGINT), Ok(vec![10, 20]));
    }

    #[test]
    fn notifications_from_strangers_and_mainpid_of_no_process_are_ignored() {
        let mut g = Generations::new(10);
        let log = g.notified(99, "MAINPID=99\nREADY=1", live);
        assert_eq!(log.len(), 1);
        assert!(log[0].contains("not a generation"), "{log:?}");
        assert_eq!(g.main, Some(10));
        assert!(!g.ready);
        let log = g.notified(10, "MAINPID=30", |_| false);
        assert!(log[0].contains("no such process"), "{log:?}");
        g.notified(10, "MAINPID=1", live);
        assert_eq!(g.main, Some(10), "never PID 1 itself");
    }

    #[test]
    fn the_supervisor_exits_with_the_last_main_process_once_every_generation_is_gone() {
        let mut g = Generations::new(10);
        g.notified(10, "READY=1", live);
        g.notified(10, "MAINPID=20\nREADY=1", live);
        // Orphans that are not generations (a shim, a helper) are reaped quietly.
        assert_eq!(g.reaped(15, Exit::Code(0)), None);
        // The old generation drains and exits 0: not the last.
        assert_eq!(g.reaped(10, Exit::Code(0)), None);
        g.notified(20, "MAINPID=30\nREADY=1", live);
        // The main process crashes while the previous one still drains...
        let mut g2 = Generations::new(40);
        g2.notified(40, "READY=1", live);
        g2.notified(40, "MAINPID=50\nREADY=1", live);
        assert_eq!(g2.reaped(50, Exit::Signal(9)), None);
        assert!(g2.targets(Signal::SIGHUP).is_err());
        // ...which replaces it (a rescue), naming the replacement.
        g2.notified(40, "MAINPID=60\nREADY=1", live);
        assert_eq!(g2.targets(Signal::SIGHUP), Ok(vec![60]));
        assert_eq!(g2.reaped(40, Exit::Code(0)), None);
        assert_eq!(g2.reaped(60, Exit::Code(3)), Some(3));
        // Stopped: the main one exits 0 after the old one.
        assert_eq!(g.reaped(20, Exit::Code(0)), None);
        assert_eq!(g.reaped(30, Exit::Code(0)), Some(0));
    }

    #[test]
    fn a_main_process_killed_by_a_signal_gives_128_plus_the_signal() {
        let mut g = Generations::new(10);
        g.notified(10, "MAINPID=20\nREADY=1", live);
        assert_eq!(g.reaped(20, Exit::Signal(9)), None);
        assert_eq!(g.reaped(10, Exit::Code(0)), Some(137));
    }
}
