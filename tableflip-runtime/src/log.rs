//! The default `tracing` subscriber: formatted lines to stderr, never blocking serving.
//!
//! A stuck log shipper (stderr a pipe nobody reads) or a full disk must not stop the
//! service. While stderr takes a line without blocking, the line is written at once, by the
//! thread that logs it: a regular file or `/dev/null` as is; a pipe through a non-blocking
//! descriptor of its own (`/proc/self/fd/2` reopened, so that stderr's shared flags are not
//! touched); a socket (the journal) with `MSG_DONTWAIT`. The first time a line would block
//! (and for a terminal, from the first line), a thread of its own is started, and from then
//! on lines go to a bounded queue that it writes out (`tracing-appender`'s non-blocking
//! writer, lossy). When the queue is full, lines are dropped and counted; the next line that
//! gets through is preceded by one saying how many were dropped. At exit the queue is
//! flushed (bounded to about a second).
//!
//! Most services never start that thread: one thread, and its start-up, fewer in every
//! generation (an upgrade's successor starts without it).
//!
//! The subscriber is the user's choice: it is installed only with the `subscriber` feature,
//! only if the builder did not say `without_default_subscriber`, and never over one that is
//! already set. When stderr is the journal (`JOURNAL_STREAM` names its device and inode, as
//! systemd sets it), lines carry no colours and no timestamps: the journal adds its own.

use std::io::{self, Write};
#[cfg(feature = "subscriber")]
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
#[cfg(feature = "subscriber")]
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(feature = "subscriber")]
use std::sync::{Arc, Mutex, OnceLock};

#[cfg(feature = "subscriber")]
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
#[cfg(feature = "subscriber")]
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before it drops (a few hundred KiB at most).
#[cfg(feature = "subscriber")]
const QUEUE_LINES: usize = 1024;

/// Flushes the log at exit (see [`finish`]).
pub(crate) struct Guard(
    #[cfg(feature = "subscriber")]
    #[allow(dead_code)]
    Arc<Shared>,
);

/// Flushes what the default subscriber queued (bounded to about a second): the last lines
/// reach stderr before the process ends.
pub(crate) fn finish(guard: Option<Guard>) {
    #[cfg(feature = "subscriber")]
    if let Some(Guard(shared)) = guard {
        let worker = shared
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(worker);
    }
    #[cfg(not(feature = "subscriber"))]
    let _ = guard;
}

/// Without the `subscriber` feature there is no default subscriber.
#[cfg(not(feature = "subscriber"))]
pub(crate) fn init() -> Option<Guard> {
    None
}

/// Installs the default subscriber, unless one is already set: `RUST_LOG` as targets and
/// levels (`info`, `tableflip_runtime=debug,warn`), default `info`. A plain target filter,
/// without the regex engine of `EnvFilter`, keeps the binary small.
#[cfg(feature = "subscriber")]
pub(crate) fn init() -> Option<Guard> {
    // The user's own subscriber stays (and no writer thread is started for nothing).
    if tracing::dispatcher::has_been_set() {
        return None;
    }
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    let shared = Arc::new(Shared {
        direct: Direct::of_stderr(),
        queue: OnceLock::new(),
        worker: Mutex::new(None),
        writing: Mutex::new(()),
    });
    let writer = Lines(shared.clone());
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if stderr_is_journal() {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .without_time();
        registry.with(fmt).try_init()
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
        registry.with(fmt).try_init()
    };
    // Set meanwhile by another thread: theirs stays.
    installed.ok()?;
    Some(Guard(shared))
}

#[cfg(feature = "subscriber")]
/// Is stderr the journal? systemd sets `JOURNAL_STREAM` to `<device>:<inode>` of the stream
/// it connects stderr to; a process whose stderr was redirected since has another.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    journal_matches(value.to_str(), nix::sys::stat::fstat(2).ok())
}

#[cfg(feature = "subscriber")]
/// Does `JOURNAL_STREAM`'s value name the file `stat` describes?
fn journal_matches(value: Option<&str>, stat: Option<nix::sys::stat::FileStat>) -> bool {
    let (Some(value), Some(stat)) = (value, stat) else {
        return false;
    };
    let Some((dev, ino)) = value.trim().split_once(':') else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>()) {
        // `dev_t` and `ino_t` are not `u64` on every platform.
        #[allow(clippy::unnecessary_cast)]
        (Ok(dev), Ok(ino)) => stat.st_dev as u64 == dev && stat.st_ino as u64 == ino,
        _ => false,
    }
}

/// Writes a line to stderr now, ignoring errors (a closed or full stderr is no reason to
/// fail, let alone panic as `eprintln!` does).
pub(crate) fn line_now(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

#[cfg(feature = "subscriber")]
/// stderr, errors ignored.
struct Stderr;

#[cfg(feature = "subscriber")]
impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // A closed or full stderr drops the line rather than failing the worker.
        let _ = io::stderr().write_all(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

#[cfg(feature = "subscriber")]
/// The non-blocking writer, which says how many lines it dropped once lines get through
/// again.
#[derive(Clone)]
struct Lossy {
    inner: NonBlocking,
    dropped: ErrorCounter,
    /// Dropped lines already reported.
    reported: Arc<AtomicUsize>,
}

#[cfg(feature = "subscriber")]
impl Lossy {
    fn report_dropped(&mut self) {
        let dropped = self.dropped.dropped_lines();
        let reported = self.reported.load(Ordering::Acquire);
        if dropped <= reported {
            return;
        }
        let line = format!(
            "tableflip: {} log line(s) dropped: stderr was not being read\n",
            dropped - reported
        );
        let _ = self.inner.write_all(line.as_bytes());
        // Reported only if the notice itself got into the queue.
        if self.dropped.dropped_lines() == dropped {
            self.reported.fetch_max(dropped, Ordering::AcqRel);
        }
    }
}

#[cfg(feature = "subscriber")]
impl Write for Lossy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.report_dropped();
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(feature = "subscriber")]
/// What the subscriber writes to: stderr at once while it does not block, else the queue.
#[derive(Clone)]
struct Lines(Arc<Shared>);

#[cfg(feature = "subscriber")]
struct Shared {
    direct: Direct,
    /// The queue and its thread, once a line would have blocked.
    queue: OnceLock<Lossy>,
    /// Flushes the queue when dropped (at exit).
    worker: Mutex<Option<WorkerGuard>>,
    /// Held while a line is written at once: lines stay whole, and in order when the queue
    /// takes over.
    writing: Mutex<()>,
}

#[cfg(feature = "subscriber")]
/// How a line can be written to stderr without blocking.
enum Direct {
    /// A regular file or `/dev/null`: a write does not wait for a reader.
    Plain,
    /// A pipe, through a non-blocking open file description of its own.
    Pipe(OwnedFd),
    /// A socket: `send` with `MSG_DONTWAIT`.
    Socket,
    /// Anything else (a terminal can be stopped with ^S): always the queue.
    Never,
}

#[cfg(feature = "subscriber")]
impl Direct {
    fn of_stderr() -> Direct {
        use nix::sys::stat::{SFlag, fstat};
        let Ok(stat) = fstat(io::stderr().as_raw_fd()) else {
            return Direct::Never;
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFREG || is_dev_null(&stat) {
            Direct::Plain
        } else if kind == SFlag::S_IFIFO {
            // A second open file description of the same pipe: O_NONBLOCK on it does not
            // change stderr's, which other processes share. No reader, or no /proc: queue.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                .open("/proc/self/fd/2")
                .map_or(Direct::Never, |f| Direct::Pipe(f.into()))
        } else if kind == SFlag::S_IFSOCK {
            Direct::Socket
        } else {
            Direct::Never
        }
    }

    /// Writes what it can of `line` without blocking; what is left (empty once all of it
    /// went). A line stderr refuses (closed, full disk) is dropped: no reason to fail.
    fn write<'a>(&self, mut line: &'a [u8]) -> &'a [u8] {
        use nix::errno::Errno;
        // Bounded: each round writes something or ends.
        for _ in 0..64 {
            if line.is_empty() {
                return line;
            }
            let wrote = match self {
                Direct::Plain => nix::unistd::write(io::stderr().as_fd(), line),
                Direct::Pipe(fd) => nix::unistd::write(fd, line),
                Direct::Socket => nix::sys::socket::send(
                    io::stderr().as_raw_fd(),
                    line,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT
                        | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                ),
                Direct::Never => return line,
            };
            match wrote {
                Ok(0) => return &[],
                Ok(n) => line = &line[n..],
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return line,
                Err(_) => return &[],
            }
        }
        line
    }
}

#[cfg(feature = "subscriber")]
fn is_dev_null(stat: &nix::sys::stat::FileStat) -> bool {
    nix::sys::stat::stat("/dev/null").is_ok_and(|null| null.st_rdev == stat.st_rdev)
        && nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode)
            .contains(nix::sys::stat::SFlag::S_IFCHR)
}

#[cfg(feature = "subscriber")]
impl Shared {
    /// The queue, its thread started on first use.
    fn queue(&self) -> &Lossy {
        self.queue.get_or_init(|| {
            let (writer, guard) = NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(QUEUE_LINES)
                .thread_name("tableflip-log")
                .finish(Stderr);
            *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
            Lossy {
                dropped: writer.error_counter(),
                reported: Arc::new(AtomicUsize::new(0)),
                inner: writer,
            }
        })
    }

    fn line(&self, line: &[u8]) {
        if let Some(queue) = self.queue.get() {
            let _ = queue.clone().write_all(line);
            return;
        }
        let writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let left = match self.queue.get() {
            Some(_) => line,
            None => self.direct.write(line),
        };
        if !left.is_empty() {
            // From now on every line goes through the queue, this one's rest first.
            let _ = self.queue().clone().write_all(left);
        }
        drop(writing);
    }
}

#[cfg(feature = "subscriber")]
impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.line(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.line(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "subscriber")]
impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(all(test, feature = "subscriber"))]
mod tests {
    use super::journal_matches;

    #[test]
    fn journal_stream_must_name_stderrs_device_and_inode() {
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let stat = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap();
        let exact = format!("{}:{}", stat.st_dev, stat.st_ino);
        assert!(journal_matches(Some(&exact), Some(stat)));
        let other_inode = format!("{}:{}", stat.st_dev, stat.st_ino + 1);
        assert!(!journal_matches(Some(&other_inode), Some(stat)));
        for bad in ["", ":", "12", "a:b", "1:2:3"] {
            assert!(!journal_matches(Some(bad), Some(stat)), "{bad:?}");
        }
        assert!(!journal_matches(None, Some(stat)));
        assert!(!journal_matches(Some(&exact), None));
    }
}
