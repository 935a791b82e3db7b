//! The connection as hyper sees it: [`DrainIo`] watches the bytes go by, so that once the
//! drain has begun an HTTP/1 connection is closed only when it has been idle past a grace
//! period, and never while the next request sits unread in the socket.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::ConnGuard;

/// The HTTP/2 client preface (RFC 9113, section 3.4): what hyper-util's `auto` builder
/// looks for too.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the connection's task, its service and its IO tell each other.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Requests whose answer is not completely handed to hyper yet.
    pub(super) active: AtomicUsize,
    /// The connection was handed to an upgrade (`101 Switching Protocols`, `CONNECT`).
    pub(super) upgraded: AtomicBool,
    /// The drain has begun (set by the connection's task).
    pub(super) draining: AtomicBool,
    /// The whole HTTP/2 preface was read: hyper serves HTTP/2 on this connection.
    pub(super) h2: AtomicBool,
    /// The peer closed its side: nothing is left to read.
    pub(super) read_eof: AtomicBool,
    /// The connection's task is about to start HTTP/2's graceful shutdown: the GOAWAY goes
    /// out alone, [`GOAWAY_GAP`] before the PING that follows it.
    pub(super) goaway: AtomicBool,
}

/// How long the graceful GOAWAY travels alone before the PING that hyper's HTTP/2 server
/// (the `h2` crate) sends right behind it, and whose answer makes it send the final GOAWAY
/// that refuses every stream the client opened since.
///
/// A client that receives both in one read answers the PING before it writes the requests
/// it had already queued (the `h2` crate's client does: its PING answer goes out first):
/// those requests then arrive after the answer and are refused, although the client sent
/// them before it learnt of the GOAWAY. Alone, the GOAWAY lets the client flush them first.
pub(super) const GOAWAY_GAP: Duration = Duration::from_millis(50);

/// HTTP/2 frame type of GOAWAY (RFC 9113, section 6.8).
const GOAWAY: u8 = 0x7;

/// Follows the frames the server writes on an HTTP/2 connection (9-byte header, then
/// the payload), to find where the graceful GOAWAY ends.
#[derive(Clone, Debug, Default)]
struct Frames {
    header: [u8; 9],
    have: usize,
    payload_left: usize,
}

impl Frames {
    /// Advances over `bytes`; returns the offset just past the first GOAWAY frame that
    /// ends within them.
    fn advance(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut goaway_end = None;
        let mut i = 0;
        while i < bytes.len() {
            if self.have < self.header.len() {
                let take = (self.header.len() - self.have).min(bytes.len() - i);
                self.header[self.have..self.have + take].copy_from_slice(&bytes[i..i + take]);
                self.have += take;
                i += take;
                if self.have < self.header.len() {
                    break;
                }
                let [a, b, c, ..] = self.header;
                self.payload_left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            } else {
                let take = self.payload_left.min(bytes.len() - i);
                self.payload_left -= take;
                i += take;
            }
            if self.have == self.header.len() && self.payload_left == 0 {
                if self.header[3] == GOAWAY && goaway_end.is_none() {
                    goaway_end = Some(i);
                }
                self.have = 0;
            }
        }
        goaway_end
    }
}

/// What keeps the drain and the server waiting for this connection: it lives as long as the
/// socket does, also inside an upgraded connection (a WebSocket) and during a lingering close.
pub(super) struct Hold {
    pub(super) _in_flight: ConnGuard,
    pub(super) _server: tokio::sync::mpsc::Sender<()>,
}

/// Where the socket goes when hyper drops it, so the connection's task can close it with a
/// lingering close.
pub(super) type Returned<T> = Arc<Mutex<Option<(T, Hold)>>>;

/// The grace periods the IO applies once the drain has begun.
#[derive(Clone, Copy, Debug)]
pub(super) struct Graces {
    pub(super) idle: Duration,
    pub(super) first_request: Duration,
}

/// HTTP/1 or HTTP/2, as far as the first bytes tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Unknown,
    H1,
    H2,
}

/// The socket hyper reads and writes, with the bookkeeping of the drain.
///
/// Once the drain has begun, an HTTP/1 connection with no request in progress, no write
/// waiting and no byte read or written for the grace period reads as closed by its peer
/// (end of file). hyper then closes it exactly as when a client leaves an idle keep-alive
/// connection. The decision is taken only at a moment when the socket has nothing to read
/// (its read would block), so a request already in the socket buffer is read and answered
/// (with `Connection: close`) rather than dropped.
pub(super) struct DrainIo<T> {
    io: Option<T>,
    hold: Option<Hold>,
    returned: Returned<T>,
    shared: Arc<Shared>,
    graces: Graces,
    proto: Proto,
    /// How many bytes of the preface matched so far.
    matched: usize,
    read_any: bool,
    write_blocked: bool,
    /// When this IO first saw the drain.
    drain_seen: Option<Instant>,
    /// The last byte read or written once draining.
    last_io: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// HTTP/2: the frames written so far.
    frames: Frames,
    /// HTTP/2: the graceful GOAWAY went out alone; nothing more is written until then.
    goaway_alone: Option<Pin<Box<Sleep>>>,
    /// End of file was reported (for real or by the drain): report it again.
    eof: bool,
}

impl<T> DrainIo<T> {
    pub(super) fn new(
        io: T,
        hold: Hold,
        returned: Returned<T>,
        shared: Arc<Shared>,
        graces: Graces,
    ) -> DrainIo<T> {
        DrainIo {
            io: Some(io),
            hold: Some(hold),
            returned,
            shared,
            graces,
            proto: Proto::Unknown,
            matched: 0,
            read_any: false,
            write_blocked: false,
            drain_seen: None,
            last_io: None,
            timer: None,
            frames: Frames::default(),
            goaway_alone: None,
            eof: false,
        }
    }

    fn io(&mut self) -> Pin<&mut T>
    where
        T: Unpin,
    {
        Pin::new(self.io.as_mut().expect("the socket is here until drop"))
    }

    fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Notes activity once draining: the idle grace counts from the last byte.
    fn touch(&mut self) {
        if self.draining() {
            self.last_io = Some(Instant::now());
        }
    }

    /// Classifies the connection from its first bytes.
    fn note_read(&mut self, bytes: &[u8]) {
        self.read_any = true;
        if self.proto == Proto::Unknown {
            (self.proto, self.matched) = classify(self.matched, bytes);
            if self.proto == Proto::H2 {
                self.shared.h2.store(true, Ordering::Release);
            }
        }
    }

    /// When this connection counts as idle enough to close, if it can be closed at all.
    fn idle_deadline(&mut self) -> Option<Instant> {
        if !self.draining()
            || self.proto == Proto::H2
            || self.write_blocked
            || self.shared.upgraded.load(Ordering::Acquire)
            || self.shared.active.load(Ordering::Acquire) > 0
        {
            return None;
        }
        let drain_seen = *self.drain_seen.get_or_insert_with(Instant::now);
        let since = self.last_io.map_or(drain_seen, |at| at.max(drain_seen));
        let grace = if self.read_any {
            self.graces.idle
        } else {
            self.graces.first_request
        };
        Some(since + grace)
    }

    /// Called when a read would block: is it time to report end of file?
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.idle_deadline() else {
            return false;
        };
        if Instant::now() >= deadline {
            return true;
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for DrainIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match self.io().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    self.eof = true;
                    self.shared.read_eof.store(true, Ordering::Release);
                } else {
                    self.note_read(read);
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.idle_expired(cx) {
                    // Nothing to read at this very moment, and idle past the grace period:
                    // hyper closes the connection as it does when a client leaves.
                    tracing::debug!("http: idle keep-alive connection closed by the drain");
                    self.eof = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> DrainIo<T> {
    fn wrote<R>(&mut self, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match &polled {
            Poll::Pending => self.write_blocked = true,
            Poll::Ready(_) => {
                self.write_blocked = false;
                self.touch();
            }
        }
        polled
    }

    /// HTTP/2 writes: the graceful GOAWAY goes out alone, then nothing for [`GOAWAY_GAP`].
    fn poll_write_h2(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(gap) = self.goaway_alone.as_mut()
            && gap.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        let splitting = self.goaway_alone.is_none() && self.shared.goaway.load(Ordering::Acquire);
        let limit = if splitting {
            self.frames.clone().advance(buf).unwrap_or(buf.len())
        } else {
            buf.len()
        };
        let polled = self.io().poll_write(cx, &buf[..limit]);
        if let Poll::Ready(Ok(n)) = polled {
            let goaway_end = self.frames.advance(&buf[..n]);
            if splitting && goaway_end.is_some() {
                self.goaway_alone = Some(Box::pin(tokio::time::sleep(GOAWAY_GAP)));
            }
        }
        self.wrote(polled)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for DrainIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.proto == Proto::H2 {
            return self.poll_write_h2(cx, buf);
        }
        let polled = self.io().poll_write(cx, buf);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.proto == Proto::H2 {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write_h2(cx, first);
        }
        let polled = self.io().poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.io().poll_flush(cx);
        self.wrote(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

impl<T> Drop for DrainIo<T> {
    fn drop(&mut self) {
        // Hand the socket back for a lingering close (or, if the task is gone, to be closed
        // with the last reference).
        if let (Some(io), Some(hold)) = (self.io.take(), self.hold.take())
            && let Ok(mut slot) = self.returned.lock()
        {
            *slot = Some((io, hold));
        }
    }
}

/// Matches the next bytes of a connection against the HTTP/2 preface, `matched` bytes of
/// which were seen already.
fn classify(matched: usize, bytes: &[u8]) -> (Proto, usize) {
    let want = &H2_PREFACE[matched..];
    let n = want.len().min(bytes.len());
    if bytes[..n] != want[..n] {
        (Proto::H1, matched)
    } else if matched + n == H2_PREFACE.len() {
        (Proto::H2, matched + n)
    } else {
        (Proto::Unknown, matched + n)
    }
}

/// A lingering close: end our side (FIN, or TLS `close_notify` then FIN), then read and
/// discard until the peer closes too, at most `bound`. Closing a socket with unread bytes
/// in it makes the kernel send a reset, which can destroy an answer the client has not read
/// yet; reading them first never does.
pub(super) async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, bound: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// At most this much is read and thrown away.
    const MAX_DISCARD: usize = 1 << 20;
    let _ = tokio::time::timeout(bound, async {
        let _ = io.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut discarded = 0;
        while discarded < MAX_DISCARD {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_h2_preface_is_recognised_across_reads() {
        let (proto, matched) = classify(0, b"PRI * HTTP/2");
        assert_eq!((proto, matched), (Proto::Unknown, 12));
        let (proto, _) = classify(matched, b".0\r\n\r\nSM\r\n\r\n\0\0\x12");
        assert_eq!(proto, Proto::H2);
    }

    #[test]
    fn the_end_of_the_first_goaway_is_found_across_writes() {
        // SETTINGS (6 bytes of payload), then GOAWAY (8), then PING (8).
        let mut out = vec![0, 0, 6, 0x4, 0, 0, 0, 0, 0];
        out.extend([0; 6]);
        let goaway_at = out.len();
        out.extend([0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
        out.extend([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let goaway_end = out.len();
        out.extend([0, 0, 8, 0x6, 0, 0, 0, 0, 0]);
        out.extend([1; 8]);
        assert_eq!(Frames::default().advance(&out), Some(goaway_end));
        for split in 1..out.len() {
            let mut frames = Frames::default();
            let first = frames.advance(&out[..split]);
            let second = frames.advance(&out[split..]).map(|n| n + split);
            let found = first.or(second);
            assert_eq!(
                found,
                Some(goaway_end),
                "split at {split} (GOAWAY at {goaway_at})"
            );
            assert_eq!(
                (frames.have, frames.payload_left),
                (0, 0),
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_http1_request_is_not_h2() {
        assert_eq!(classify(0, b"POST / HTTP/1.1\r\n").0, Proto::H1);
        assert_eq!(classify(0, b"P").0, Proto::Unknown);
        assert_eq!(classify(1, b"UT / HTTP/1.1\r\n").0, Proto::H1);
    }
}
