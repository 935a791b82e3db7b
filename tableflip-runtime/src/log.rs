//! The default `tracing` subscriber: formatted lines to stderr through a non-blocking,
//! lossy writer, so that logging never blocks serving.
//!
//! A stuck log shipper (stderr a pipe nobody reads) or a full disk must not stop the
//! service: lines go to a bounded queue that a thread of its own writes out
//! (`tracing-appender`'s non-blocking writer, lossy). When the queue is full, lines are
//! dropped and counted; the next line that gets through is preceded by one saying how many
//! were dropped. At exit the queue is flushed (bounded to about a second).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before it drops (a few hundred KiB at most).
const QUEUE_LINES: usize = 1024;

/// Flushes the log at exit (when dropped).
pub(crate) struct Guard(#[allow(dead_code)] WorkerGuard);

/// Installs the default subscriber: `RUST_LOG` as targets and levels (`info`,
/// `tableflip_runtime=debug,warn`), default `info`. A plain target filter, without the regex
/// engine of `EnvFilter`, keeps the binary small.
pub(crate) fn init() -> Option<Guard> {
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init()
        .ok()?;
    Some(Guard(guard))
}

/// Writes a line to stderr now, ignoring errors (a closed or full stderr is no reason to
/// fail, let alone panic as `eprintln!` does).
pub(crate) fn line_now(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// stderr, errors ignored.
struct Stderr;

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

/// The non-blocking writer, which says how many lines it dropped once lines get through
/// again.
#[derive(Clone)]
struct Lossy {
    inner: NonBlocking,
    dropped: ErrorCounter,
    /// Dropped lines already reported.
    reported: Arc<AtomicUsize>,
}

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

impl Write for Lossy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.report_dropped();
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a> MakeWriter<'a> for Lossy {
    type Writer = Lossy;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
