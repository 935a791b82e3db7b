//! What an accept loop does when `accept` fails: back off, and log at a bounded rate.
//!
//! Out of descriptors (`EMFILE`, `ENFILE`) or memory (`ENOBUFS`, `ENOMEM`), `accept` fails
//! again at once for as long as the condition lasts; a loop that only logs and retries then
//! spins a core and writes hundreds of thousands of lines a second. Go's `net/http` sleeps
//! 5 ms after the first failure, doubling up to 1 s, and resets after a success; so does
//! [`AcceptBackoff`]. Errors that belong to one connection only (the client reset it before
//! it was accepted) are retried at once.

use std::io;
use std::time::{Duration, Instant};

/// The first pause after a failed accept.
const FIRST_DELAY: Duration = Duration::from_millis(5);
/// The longest pause.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one log line per this interval; the lines skipped meanwhile are counted.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Backs off after failed accepts, as Go's `net/http` does (5 ms, doubling, at most 1 s),
/// and logs them at most once a second with the number of failures not logged.
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener) {
/// use tableflip_runtime::AcceptBackoff;
///
/// let mut backoff = AcceptBackoff::new();
/// loop {
///     match listener.accept().await {
///         Ok((conn, _)) => {
///             backoff.succeeded();
///             drop(conn); // serve it
///         }
///         Err(e) => backoff.failed(&e).await,
///     }
/// }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The pause after the next failure; zero after a success.
    delay: Duration,
    /// When the last line was logged.
    logged_at: Option<Instant>,
    /// Failures since then that were not logged.
    unlogged: u64,
}

impl AcceptBackoff {
    /// A backoff with no failure yet.
    pub fn new() -> AcceptBackoff {
        AcceptBackoff::default()
    }

    /// Call after an accept succeeded: the next failure pauses 5 ms again.
    pub fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Call after an accept failed: logs the error (at most once a second) and, unless the
    /// error concerns that one connection only, sleeps before the caller accepts again.
    pub async fn failed(&mut self, error: &io::Error) {
        if per_connection(error) {
            tracing::debug!(error = %error, "accept: connection gone before it was accepted");
            return;
        }
        self.delay = (self.delay * 2).clamp(FIRST_DELAY, MAX_DELAY);
        self.log(error);
        tokio::time::sleep(self.delay).await;
    }

    /// How long the last failure paused (zero after a success).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    fn log(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut self.unlogged);
        self.logged_at = Some(now);
        tracing::warn!(
            error = %error,
            retry_in_ms = self.delay.as_millis() as u64,
            not_logged = unlogged,
            "accept failed; backing off"
        );
    }
}

/// Errors about one connection that the client gave up on: accept the next one at once.
fn per_connection(error: &io::Error) -> bool {
    use nix::libc;
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delay_doubles_from_5ms_to_1s_and_resets_after_a_success() {
        let mut b = AcceptBackoff::new();
        let emfile = io::Error::from_raw_os_error(nix::libc::EMFILE);
        let mut seen = Vec::new();
        for _ in 0..10 {
            b.failed(&emfile).await;
            seen.push(b.delay().as_millis());
        }
        assert_eq!(seen, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        b.failed(&emfile).await;
        assert_eq!(b.delay(), FIRST_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_reset_before_accept_is_retried_at_once() {
        let mut b = AcceptBackoff::new();
        let before = tokio::time::Instant::now();
        b.failed(&io::Error::from(io::ErrorKind::ConnectionAborted))
            .await;
        assert_eq!(b.delay(), Duration::ZERO);
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn logs_at_most_once_a_second_and_counts_the_rest() {
        let mut b = AcceptBackoff::new();
        let emfile = io::Error::from_raw_os_error(nix::libc::EMFILE);
        for _ in 0..4 {
            b.failed(&emfile).await; // 5 + 10 + 20 + 40 ms: one line
        }
        assert_eq!(b.unlogged, 3);
    }
}
