//! The child's view of its parent: fd 3 (ready pipe), fd 4 (names pipe), fds 5+i.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{SFlag, fstat};
use tokio::sync::watch;

use crate::error::Error;
use crate::fds::Key;
use crate::handshake::{
    FIRST_FILE_FD, NAMES_FD, READY_BYTE, READY_FD, SENTINEL, STOPPING_BYTE, file_fd,
};
use crate::{gob, sys};

/// How long the child waits for the parent to send the names.
const NAMES_TIMEOUT: Duration = Duration::from_secs(30);

/// fd 3, the ready pipe, through its life.
enum ReadyPipe {
    /// Not ready yet.
    Pending(OwnedFd),
    /// The ready byte was sent; kept open to say "stopping" later (or to close at exit).
    Sent(OwnedFd),
    /// Closed: the stop was announced, the parent is gone, or the start was abandoned.
    Closed,
}

/// What [`Parent::send_ready`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadySent {
    /// The byte went out now.
    Now,
    /// It had been sent before.
    Before,
    /// The start was abandoned: this process will never say ready.
    Abandoned,
}

/// The parent as seen from the child.
pub(crate) struct Parent {
    ready: Arc<Mutex<ReadyPipe>>,
    /// The start was abandoned (a stop before ready).
    abandoned: std::sync::atomic::AtomicBool,
    /// `None` while the parent lives; then `Ok` if it closed fd 4 cleanly.
    exited: watch::Receiver<Option<Result<(), String>>>,
    /// fd 4, owned by the watcher thread (it closes it once the parent is gone).
    names: Weak<OwnedFd>,
}

/// What a tableflip parent handed over.
pub(crate) struct Handoff {
    pub(crate) parent: Parent,
    pub(crate) files: Vec<(Key, OwnedFd)>,
    /// Something odd but harmless the handshake noticed, for the log.
    pub(crate) warning: Option<String>,
}

/// Reads the handshake. Called once, at start-up, when the sentinel is set.
pub(crate) fn receive() -> Result<Handoff, Error> {
    let ready = take_pipe(READY_FD, "ready pipe", OFlag::O_WRONLY)?;
    let names_fd = take_pipe(NAMES_FD, "names pipe", OFlag::O_RDONLY)?;

    let mut reader = DeadlineReader {
        fd: names_fd.as_fd(),
        deadline: Instant::now() + NAMES_TIMEOUT,
    };
    let names = gob::decode_names(&mut reader)
        .map_err(|e| Error::handshake("can't decode the names sent on fd 4", Some(e.into())))?;

    let mut files = Vec::with_capacity(names.len());
    for (i, entry) in names.into_iter().enumerate() {
        let fd = file_fd(i);
        let key = Key::from_names_entry(entry)
            .map_err(|msg| Error::handshake(format!("entry {i} of the names: {msg}"), None))?;
        let owned = sys::take_inherited_fd(fd)
            .map_err(|e| Error::handshake(format!("can't take fd {fd} ({key})"), Some(e.into())))?
            .ok_or_else(|| {
                Error::handshake(
                    format!("the parent named {key} for fd {fd}, but fd {fd} is not open"),
                    None,
                )
            })?;
        files.push((key, owned));
    }
    let warning = close_unnamed_fds(file_fd(files.len()));

    let (tx, rx) = watch::channel(None);
    let ready = Arc::new(Mutex::new(ReadyPipe::Pending(ready)));
    let ready_in_watcher = ready.clone();
    let names_fd = Arc::new(names_fd);
    let watched = names_fd.clone();
    let names = Arc::downgrade(&names_fd);
    drop(names_fd);
    std::thread::Builder::new()
        .name("tableflip-parent".into())
        .spawn(move || {
            let result = wait_for_eof(watched.as_fd());
            // Nobody reads fd 3 any more: a "stopping" byte would go nowhere.
            let mut ready = ready_in_watcher.lock().unwrap_or_else(|e| e.into_inner());
            if let ReadyPipe::Sent(_) = *ready {
                *ready = ReadyPipe::Closed;
            }
            drop(ready);
            let _ = tx.send(Some(result));
        })
        .map_err(|e| Error::io("can't start the thread that watches the parent", e))?;

    Ok(Handoff {
        parent: Parent {
            ready,
            abandoned: std::sync::atomic::AtomicBool::new(false),
            exited: rx,
            names,
        },
        files,
        warning,
    })
}

/// Descriptors beyond the named ones were leaked to us (a parent, or code in it, that opened
/// them without close-on-exec): close them, or a leaked listening socket would stay open in
/// every generation. Returns a warning for the log.
fn close_unnamed_fds(first_unnamed: RawFd) -> Option<String> {
    let extra = sys::inherited_without_cloexec(first_unnamed);
    if extra.is_empty() {
        return None;
    }
    for &fd in &extra {
        sys::close_leaked(fd);
    }
    Some(format!(
        "closed {} inherited descriptor(s) the parent did not name (fds {:?}); only fds {}..{} were named",
        extra.len(),
        extra,
        FIRST_FILE_FD,
        first_unnamed
    ))
}

fn take_pipe(fd: RawFd, what: &str, mode: OFlag) -> Result<OwnedFd, Error> {
    let owned = sys::take_inherited_fd(fd)
        .map_err(|e| Error::handshake(format!("can't take fd {fd} ({what})"), Some(e.into())))?
        .ok_or_else(|| {
            Error::handshake(
                format!("{SENTINEL} is set but fd {fd} ({what}) is not open"),
                None,
            )
        })?;
    let stat = fstat(owned.as_raw_fd())
        .map_err(|e| Error::handshake(format!("can't stat fd {fd} ({what})"), Some(e.into())))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err(Error::handshake(
            format!("fd {fd} ({what}) is not a pipe"),
            None,
        ));
    }
    let actual = sys::access_mode(owned.as_fd()).map_err(|e| {
        Error::handshake(format!("can't read the flags of fd {fd}"), Some(e.into()))
    })?;
    if actual != mode && actual != OFlag::O_RDWR {
        let want = if mode == OFlag::O_WRONLY {
            "writing"
        } else {
            "reading"
        };
        return Err(Error::handshake(
            format!("fd {fd} ({what}) is not open for {want}"),
            None,
        ));
    }
    Ok(owned)
}

/// Reads from a pipe that may be blocking or not, giving up at a deadline.
struct DeadlineReader<'a> {
    fd: BorrowedFd<'a>,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the parent sent no names within {NAMES_TIMEOUT:?}"),
                ));
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            match nix::unistd::read(self.fd.as_raw_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Is the pipe hung up: has every write end been closed?
fn hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP))
}

/// Blocks until the parent closes its end of the names pipe (it exited).
fn wait_for_eof(fd: BorrowedFd<'_>) -> Result<(), String> {
    let mut reader = DeadlineReader {
        fd,
        deadline: Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
    };
    let mut buf = [0u8; 1];
    match reader.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(_) => Err("unexpected data from the parent process on fd 4".into()),
        Err(e) => Err(format!("reading fd 4: {e}")),
    }
}

impl Parent {
    /// Sends the ready byte (once), keeping fd 3 open for [`send_stopping`]. A parent that
    /// is already gone is not an error for the caller: this process is then the service
    /// (with a warning).
    ///
    /// [`send_stopping`]: Self::send_stopping
    pub(crate) fn send_ready(&self) -> Result<ReadySent, Error> {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        let fd = match std::mem::replace(&mut *ready, ReadyPipe::Closed) {
            ReadyPipe::Pending(fd) => fd,
            ReadyPipe::Sent(fd) => {
                *ready = ReadyPipe::Sent(fd);
                return Ok(ReadySent::Before);
            }
            ReadyPipe::Closed if self.abandoned() => return Ok(ReadySent::Abandoned),
            ReadyPipe::Closed => return Ok(ReadySent::Before),
        };
        let mut file = std::fs::File::from(fd);
        match file.write_all(&[READY_BYTE]) {
            Ok(()) => {
                *ready = ReadyPipe::Sent(file.into());
                Ok(ReadySent::Now)
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {
                tracing::warn!(
                    pid = std::process::id(),
                    "the parent process exited before this one was ready; this process is now the service"
                );
                Ok(ReadySent::Now)
            }
            Err(e) => Err(Error::NotifyParent(e)),
        }
    }

    /// Gives up the start: closes fd 3 without the ready byte (the parent sees end of file:
    /// not ready). Returns false if the ready byte was already sent.
    pub(crate) fn abandon(&self) -> bool {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *ready, ReadyPipe::Closed) {
            ReadyPipe::Pending(_) => {
                self.abandoned
                    .store(true, std::sync::atomic::Ordering::Release);
                true
            }
            other => {
                *ready = other;
                false
            }
        }
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Tells a parent that still lives that this process is stopping on purpose (so that it
    /// does not replace it as crashed), and closes fd 3.
    pub(crate) fn send_stopping(&self) {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if let ReadyPipe::Sent(fd) = std::mem::replace(&mut *ready, ReadyPipe::Closed) {
            // A parent that is gone (EPIPE; SIGPIPE is ignored) or a Go parent, which closed
            // its end after the ready byte: nothing to tell.
            let _ = std::fs::File::from(fd).write_all(&[STOPPING_BYTE]);
        }
    }

    /// Has the parent exited?
    ///
    /// The watcher thread learns it a moment after the fact; until then fd 4 itself is asked
    /// (hung up: every write end is closed), so that an upgrade right after the parent's exit
    /// is not refused with `ParentAlive`.
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.borrow().is_some() || self.names.upgrade().is_some_and(|fd| hung_up(fd.as_fd()))
    }

    /// Becomes `Some` once the parent has exited.
    pub(crate) fn exited(&self) -> watch::Receiver<Option<Result<(), String>>> {
        self.exited.clone()
    }

    /// Waits until the parent has exited.
    pub(crate) async fn wait(&self) -> Result<(), Error> {
        let mut rx = self.exited.clone();
        let result = match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        result.map_err(|msg| {
            if msg.starts_with("unexpected data") {
                Error::ParentMisbehaved
            } else {
                Error::handshake(msg, None)
            }
        })
    }
}
