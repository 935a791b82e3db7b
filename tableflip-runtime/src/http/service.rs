//! The user's tower service as hyper calls it: every answer counted until hyper has it all,
//! `Connection: close` on HTTP/1 answers once the drain has begun, the peer's address on
//! every request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::RemoteAddr;
use super::io::Shared;
use crate::Handle;

/// A request whose answer hyper has not completely taken yet.
pub(super) struct Active(Arc<Shared>);

impl Active {
    fn new(shared: &Arc<Shared>) -> Active {
        shared.active.fetch_add(1, Ordering::AcqRel);
        Active(shared.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The user's service, wrapped for one connection.
pub(super) struct Tracked<S, A> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) tf: Handle,
    pub(super) addr: A,
}

/// Boxed, so that any service's future fits.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, A, B> hyper::service::Service<Request<Incoming>> for Tracked<S, A>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let active = Active::new(&self.shared);
        let version = req.version();
        let connect = req.method() == Method::CONNECT;
        let extensions = req.extensions_mut();
        extensions.insert(RemoteAddr(self.addr.clone()));
        #[cfg(feature = "axum")]
        extensions.insert(::axum::extract::ConnectInfo(self.addr.clone()));
        let mut svc = self.inner.clone();
        let (shared, tf) = (self.shared.clone(), self.tf.clone());
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            let mut res = svc.call(req).await?;
            if version < Version::HTTP_2 {
                let status = res.status();
                if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
                    // The socket goes to the upgrade (a WebSocket): no longer ours to close.
                    shared.upgraded.store(true, Ordering::Release);
                } else if tf.is_draining() {
                    // The client reconnects, to the successor, after this answer.
                    let close = HeaderValue::from_static("close");
                    res.headers_mut().insert(CONNECTION, close);
                }
            }
            Ok(res.map(|body| TrackedBody {
                inner: body,
                active: Some(active),
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// An answer's body; the request counts as active until hyper has taken it all.
    pub(super) struct TrackedBody<B> {
        #[pin]
        inner: B,
        active: Option<Active>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.active.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for TrackedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackedBody")
    }
}
