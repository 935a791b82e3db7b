//! A stand-in for systemd's notification socket that behaves like systemd where the fd store
//! is concerned: a unix datagram socket bound by the test, which
//!
//! - learns each sender's pid from `SCM_CREDENTIALS`, and accepts a message only from the
//!   unit's main process (`NotifyAccess=main`): the process the test started, then whichever
//!   `MAINPID=` names; messages from anyone else are logged as rejected and have no effect;
//! - answers `BARRIER=1` by closing the descriptor that came with it, from any sender;
//! - keeps an fd store: `FDSTORE=1` adds the passed descriptors under `FDNAME=` (default
//!   `stored`), dropping a descriptor of a socket it holds already (systemd's `same_fd`);
//!   `FDSTOREREMOVE=1` drops every entry named `FDNAME=`. Stored sockets stay open here, as
//!   in systemd, so connections to a stored listening socket wait in its backlog while no
//!   process of the service runs;
//! - hands the stored descriptors back for the next process ([`StandIn::stored_fds`]), as
//!   systemd does with `LISTEN_FDS`/`LISTEN_FDNAMES` ([`start_with_fds`]).
//!
//! Messages that arrive while the test has not said which process is the main one yet
//! ([`StandIn::expect_new_main`] before starting one, [`StandIn::set_main`] right after) are
//! kept and judged once it has, so that no message races with the test learning the pid.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use super::{Scratch, Service, WAIT};

/// One notification as the stand-in judged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The sender (`SCM_CREDENTIALS`).
    pub pid: i32,
    /// The datagram.
    pub text: String,
    /// How many descriptors came with it.
    pub fds: usize,
    /// Did it come from the main process (or is it a barrier, which anyone may send)?
    pub accepted: bool,
    /// With an accepted `MAINPIDFD=1` and one descriptor: the pid of the process that
    /// pidfd refers to (from `/proc/self/fdinfo`), which became the main process, as
    /// systemd >= 255 does.
    pub pidfd_pid: Option<i32>,
}

impl Note {
    /// The value of `KEY=` in the message, if it has one.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    /// Is it only a progress report: status lines, watchdog pings, timeout extensions
    /// (which arrive at times that depend on timing)?
    pub fn is_progress(&self) -> bool {
        is_progress(&self.text)
    }

    /// Is it about the fd store?
    pub fn is_store(&self) -> bool {
        self.field("FDSTORE").is_some() || self.field("FDSTOREREMOVE").is_some()
    }
}

/// Does the message only report progress (`STATUS=`, `WATCHDOG=1`, `EXTEND_TIMEOUT_USEC=`)?
pub fn is_progress(text: &str) -> bool {
    text.lines().all(|l| {
        l.starts_with("STATUS=") || l == "WATCHDOG=1" || l.starts_with("EXTEND_TIMEOUT_USEC=")
    })
}

/// The pid a pidfd refers to (`Pid:` in its fdinfo).
fn pidfd_pid(fd: std::os::fd::BorrowedFd<'_>) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
}

/// A datagram with its sender and descriptors, not judged yet.
struct Received {
    pid: i32,
    text: String,
    fds: Vec<OwnedFd>,
}

#[derive(Default)]
struct Systemd {
    /// The main process; `None` while the test is starting a new one.
    main: Option<i32>,
    /// What came while `main` was unknown.
    queue: Vec<Received>,
    log: Vec<Note>,
    store: Vec<(String, OwnedFd)>,
}

impl Systemd {
    fn receive(&mut self, r: Received) {
        if self.main.is_none() {
            self.queue.push(r);
            return;
        }
        let accepted = Some(r.pid) == self.main || r.text.lines().any(|l| l == "BARRIER=1");
        let mut note = Note {
            pid: r.pid,
            text: r.text,
            fds: r.fds.len(),
            accepted,
            pidfd_pid: None,
        };
        if accepted {
            if let Some(pid) = note.field("MAINPID").and_then(|p| p.parse().ok()) {
                self.main = Some(pid);
            }
            if note.field("MAINPIDFD") == Some("1") && r.fds.len() == 1 {
                note.pidfd_pid = pidfd_pid(r.fds[0].as_fd());
                if let Some(pid) = note.pidfd_pid {
                    self.main = Some(pid);
                }
            }
            let name = note.field("FDNAME").unwrap_or("stored").to_owned();
            if note.field("FDSTOREREMOVE") == Some("1") {
                self.store.retain(|(n, _)| *n != name);
            }
            if note.field("FDSTORE") == Some("1") {
                for fd in r.fds {
                    let id = identity(fd.as_fd());
                    if !self.store.iter().any(|(_, s)| identity(s.as_fd()) == id) {
                        self.store.push((name.clone(), fd));
                    }
                }
            }
        }
        self.log.push(note);
    }

    fn set_main(&mut self, pid: i32) {
        self.main = Some(pid);
        for r in std::mem::take(&mut self.queue) {
            self.receive(r);
        }
    }
}

/// `(st_dev, st_ino)`: the same open socket has the same pair in every process.
fn identity(fd: std::os::fd::BorrowedFd<'_>) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).expect("fstat");
    (st.st_dev, st.st_ino)
}

/// The inode of a descriptor's file (for a socket: the `socket:[N]` number).
pub fn inode(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    identity(fd).1
}

/// The stand-in; see the module documentation. Stops its thread on drop.
pub struct StandIn {
    path: PathBuf,
    systemd: Arc<Mutex<Systemd>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Binds the socket in `scratch`; the main process is not known yet.
    pub fn bind(scratch: &Scratch) -> StandIn {
        let path = scratch.path("notify");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        rustix::net::sockopt::set_socket_passcred(&sock, true).expect("SO_PASSCRED");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let systemd = Arc::new(Mutex::new(Systemd::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (systemd, stop) = (systemd.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(r) = receive(&sock) {
                        systemd.lock().unwrap().receive(r);
                    }
                }
            })
        };
        StandIn {
            path,
            systemd,
            stop,
            thread: Some(thread),
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn env(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    /// Before starting a new main process: hold its messages until [`set_main`](Self::set_main).
    pub fn expect_new_main(&self) {
        self.systemd.lock().unwrap().main = None;
    }

    /// `pid` is the main process (the one the test started).
    pub fn set_main(&self, pid: i32) {
        self.systemd.lock().unwrap().set_main(pid);
    }

    /// The main process, as `MAINPID=` moved it.
    pub fn main(&self) -> Option<i32> {
        self.systemd.lock().unwrap().main
    }

    /// Every message judged so far, in order, but progress reports ([`Note::is_progress`]).
    pub fn notes(&self) -> Vec<Note> {
        let mut notes = self.all_notes();
        notes.retain(|n| !n.is_progress());
        notes
    }

    /// Every message judged so far, in order.
    pub fn all_notes(&self) -> Vec<Note> {
        self.systemd.lock().unwrap().log.clone()
    }

    /// Waits (bounded) until the messages but progress reports satisfy `done`; returns them.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Note]) -> bool) -> Vec<Note> {
        self.wait(what, false, done)
    }

    /// Waits (bounded) until all the messages satisfy `done`; returns them.
    pub fn wait_for_all(&self, what: &str, done: impl Fn(&[Note]) -> bool) -> Vec<Note> {
        self.wait(what, true, done)
    }

    fn wait(&self, what: &str, all: bool, done: impl Fn(&[Note]) -> bool) -> Vec<Note> {
        let deadline = Instant::now() + WAIT;
        loop {
            let notes = if all { self.all_notes() } else { self.notes() };
            if done(&notes) {
                return notes;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; notifications: {notes:#?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The store: names and inodes, in the order stored.
    pub fn store(&self) -> Vec<(String, u64)> {
        self.systemd
            .lock()
            .unwrap()
            .store
            .iter()
            .map(|(n, fd)| (n.clone(), inode(fd.as_fd())))
            .collect()
    }

    /// Copies of the stored descriptors with their names, for the next process.
    pub fn stored_fds(&self) -> Vec<(String, OwnedFd)> {
        self.systemd
            .lock()
            .unwrap()
            .store
            .iter()
            .map(|(n, fd)| (n.clone(), fd.try_clone().expect("dup a stored fd")))
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One datagram, or `None` after the read timeout. Barriers are answered here, at once.
fn receive(sock: &UnixDatagram) -> Option<Received> {
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16), ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).ok()?;
    let mut pid = 0;
    let mut fds = Vec::new();
    for c in control.drain() {
        match c {
            RecvAncillaryMessage::ScmRights(rights) => fds.extend(rights),
            RecvAncillaryMessage::ScmCredentials(cred) => pid = cred.pid.as_raw_nonzero().get(),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&buf[..msg.bytes]).into_owned();
    if text.lines().any(|l| l == "BARRIER=1") {
        // Everything sent before has been processed (one thread, in order): close it.
        fds.clear();
    }
    Some(Received { pid, text, fds })
}

/// Starts `exe` as systemd starts a service with a non-empty fd store: the stored sockets at
/// fds 3, 4, ... with `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` (its own pid, through
/// `sh`, which execs it), plus `envs`.
pub fn start_with_fds(
    exe: &Path,
    scratch: &Scratch,
    fds: Vec<(String, OwnedFd)>,
    envs: &[(&str, &str)],
) -> Service {
    let names: Vec<String> = fds.iter().map(|(n, _)| n.clone()).collect();
    let mappings = fds
        .into_iter()
        .enumerate()
        .map(|(i, (_, fd))| FdMapping {
            parent_fd: fd,
            child_fd: 3 + i as i32,
        })
        .collect();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "export LISTEN_PID=$$; exec \"$0\""])
        .arg(exe)
        .env("LISTEN_FDS", names.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .envs(envs.iter().copied());
    cmd.fd_mappings(mappings).expect("place the stored fds");
    Service::spawn(cmd, scratch)
}
