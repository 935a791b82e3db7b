//! The default `tracing` subscriber: formatted lines to stderr through a non-blocking,
//! lossy writer, so that logging never blocks serving.
//!
//! A stuck log shipper (stderr a pipe nobody reads) or a full disk must not stop the
//! service: lines go to a bounded queue that a thread of its own writes out
//! (`tracing-appender`'s non-blocking writer, lossy). When the queue is full, lines are
//! dropped and counted; the next line that gets through is preceded by one saying how many
//! were dropped. At exit the queue is flushed (bounded to about a second).
//!
//! The subscriber is the user's choice: it is installed only with the `subscriber` feature,
//! only if the builder did not say `without_default_subscriber`, and never over one that is
//! already set. When stderr is the journal (`JOURNAL_STREAM` names its device and inode, as
//! systemd sets it), lines carry no colours and no timestamps: the journal adds its own.

use std::io::{self, Write};
#[cfg(feature = "subscriber")]
use std::sync::Arc;
#[cfg(feature = "subscriber")]
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "subscriber")]
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
#[cfg(feature = "subscriber")]
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before it drops (a few hundred KiB at most).
#[cfg(feature = "subscriber")]
const QUEUE_LINES: usize = 1024;

/// Flushes the log at exit (when dropped).
pub(crate) struct Guard(
    #[cfg(feature = "subscriber")]
    #[allow(dead_code)]
    WorkerGuard,
);

/// Flushes what the default subscriber queued (bounded to about a second): the last lines
/// reach stderr before the process ends.
pub(crate) fn finish(guard: Option<Guard>) {
    #[cfg(feature = "subscriber")]
    drop(guard);
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
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("tableflip-log")
        .finish(Stderr);
    let writer = Lossy {
        dropped: writer.error_counter(),
        reported: Arc::new(AtomicUsize::new(0)),
        inner: writer,
    };
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
    Some(Guard(guard))
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
impl<'a> MakeWriter<'a> for Lossy {
    type Writer = Lossy;

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
