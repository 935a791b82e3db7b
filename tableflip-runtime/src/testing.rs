//! A test double for service bodies: Go tableflip's `testing` package, and more.
//!
//! [`TestService`] hands a body under test the very types the real service gives it — a
//! [`Handle`] and real tokio listeners, bound on loopback — without any handshake, parent,
//! signal or systemd. The test plays the rest of the world: it triggers
//! [`shutdown`](Handle::shutdown) ([`hand_over`](TestService::hand_over), as if a successor
//! took over, or [`stop`](TestService::stop)), sees whether the body said
//! [`ready`](Handle::ready), and counts the connections it [tracks](Handle::track). The
//! body is unchanged: the code that runs under `#[tableflip::main]` runs here.
//!
//! Differences from the real service, all on purpose: [`Handle::upgrade`] starts no process
//! and fails (counted in [`upgrade_requests`](TestService::upgrade_requests); Go's double
//! returns `ErrNotSupported` too); nothing drains or exits (the test decides when the body
//! is done); [`Handle::has_parent`] is false and [`Handle::wait_for_parent`] returns at once;
//! any number of doubles may exist in one process (the real [`Upgrader`] is one per process).
//!
//! This module is always built: it has no dependency of its own and costs nothing unless
//! used, and a body's tests need nothing but the crate they already depend on.
//!
//! ```
//! use tableflip_runtime::testing::TestService;
//! use tableflip_runtime::{Handle, ShutdownReason};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpListener;
//!
//! /// The body under test: greets every connection, until shutdown.
//! async fn serve(listener: TcpListener, tf: Handle) -> std::io::Result<ShutdownReason> {
//!     tf.ready().expect("ready");
//!     loop {
//!         tokio::select! {
//!             accepted = listener.accept() => {
//!                 let (mut conn, _) = accepted?;
//!                 let in_flight = tf.track();
//!                 tokio::spawn(async move {
//!                     let _ = conn.write_all(b"hello\n").await;
//!                     let _ = conn.read(&mut [0; 1]).await; // until the client leaves
//!                     drop(in_flight);
//!                 });
//!             }
//!             reason = tf.shutdown() => return Ok(reason),
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let double = TestService::new();
//! let listener = double.tcp_listener().unwrap();
//! let addr = listener.local_addr().unwrap();
//! let body = tokio::spawn(serve(listener, double.handle()));
//! double.wait_ready().await;
//!
//! let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
//! let mut greeting = [0; 6];
//! client.read_exact(&mut greeting).await.unwrap();
//! assert_eq!(&greeting, b"hello\n");
//! assert_eq!(double.in_flight(), 1);
//!
//! double.hand_over(); // as if a successor were ready
//! assert_eq!(body.await.unwrap().unwrap(), ShutdownReason::Upgraded);
//! drop(client);
//! double.wait_idle().await;
//! # });
//! ```

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{mpsc, watch};

use crate::env::Startup;
use crate::error::{Error, UpgradeError};
use crate::fds::{Fds, FromFd};
use crate::handle::Handle;
use crate::lifecycle::core::{Inner, Setup};
use crate::lifecycle::msg::Msg;
use crate::lifecycle::phase::{Event, ExitReason};
use crate::listeners::{Listeners, acquire};
use crate::spec::ListenerSpec;
use crate::systemd::Notifier;
use crate::upgrader::{DEFAULT_UPGRADE_TIMEOUT, Upgrader};

/// A service double: a real [`Handle`] whose world the test controls. See the [module
/// docs](self).
pub struct TestService {
    upgrader: Upgrader,
    seen: Arc<Seen>,
}

/// What the body did.
struct Seen {
    ready: watch::Sender<bool>,
    upgrade_requests: AtomicUsize,
}

impl TestService {
    /// A fresh double, not ready, not shutting down.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (like `tokio::spawn`): it starts a task that answers the
    /// handle's requests.
    pub fn new() -> TestService {
        static STARTUP: OnceLock<Startup> = OnceLock::new();
        let startup = STARTUP.get_or_init(|| Startup {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            argv0: OsString::new(),
            args: Vec::new(),
            handoff: Mutex::new(None),
            listen_vars: [None, None, None],
            activation: Mutex::new(None),
        });
        // No parent, no systemd, no pid file, and no lifecycle driver: `answer` plays it.
        let (tx, rx) = mpsc::unbounded_channel();
        let upgrader = Upgrader::from_inner(Arc::new(Inner::new(Setup {
            startup,
            timeout: DEFAULT_UPGRADE_TIMEOUT,
            pid_file: None,
            parent: None,
            fds: Fds::new(Vec::new(), None),
            systemd: Notifier::default(),
            tx,
        })));
        let seen = Arc::new(Seen {
            ready: watch::channel(false).0,
            upgrade_requests: AtomicUsize::new(0),
        });
        tokio::spawn(answer(Arc::downgrade(upgrader.inner()), rx, seen.clone()));
        TestService { upgrader, seen }
    }

    /// The handle to give the body under test (cheap to clone; every clone is the same).
    pub fn handle(&self) -> Handle {
        Handle::new(self.upgrader.clone())
    }

    /// A listener for the body, bound now (no handshake, nothing inherited), as
    /// [`Handle::listen`] gives it: e.g. `listen::<tokio::net::TcpListener>("tcp",
    /// "127.0.0.1:0")` or a unix socket in a temporary directory.
    pub fn listen<T: FromFd>(&self, network: &str, addr: &str) -> Result<T, Error> {
        self.upgrader.fds().listen(network, addr)
    }

    /// A tokio TCP listener on a free loopback port (`127.0.0.1:0`).
    pub fn tcp_listener(&self) -> Result<tokio::net::TcpListener, Error> {
        self.listen("tcp", "127.0.0.1:0")
    }

    /// The declared listeners of a [`Service`](crate::Service), bound now, for the same
    /// closure the service's [`run`](crate::Service::run) takes: `main(double.listeners([...])?,
    /// double.handle())`. Give addresses a test can use (`"127.0.0.1:0"`).
    pub fn listeners(
        &self,
        specs: impl IntoIterator<Item = ListenerSpec>,
    ) -> Result<Listeners, Error> {
        let mut listeners = Listeners::default();
        for spec in specs {
            listeners.push(acquire(&self.upgrader, &spec)?);
        }
        Ok(listeners)
    }

    /// As if a successor took over: [`Handle::shutdown`] resolves with
    /// [`Upgraded`](ExitReason::Upgraded) for every waiter, and connections recorded with
    /// [`Handle::add_conn`] count as passed on ([`ConnHandoff::release`](crate::ConnHandoff::release)
    /// returns true).
    pub fn hand_over(&self) {
        // What an upgrade passes on, as the real one takes it (the duplicates are dropped).
        let _ = self.upgrader.fds().snapshot();
        publish(self.upgrader.inner(), ExitReason::Upgraded);
    }

    /// As if a stop signal came: [`Handle::shutdown`] resolves with
    /// [`Stopped`](ExitReason::Stopped) (the same as the body's own [`Handle::stop`]).
    pub fn stop(&self) {
        publish(self.upgrader.inner(), ExitReason::Stopped);
    }

    /// Has the body called [`Handle::ready`]?
    pub fn is_ready(&self) -> bool {
        *self.seen.ready.borrow()
    }

    /// Waits until the body calls [`Handle::ready`] (bound it with a timeout in tests).
    pub async fn wait_ready(&self) {
        let mut rx = self.seen.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// The descriptors the body holds for the next process (what a real upgrade would pass:
    /// its listeners, files and connections).
    pub fn fds(&self) -> &Fds {
        self.upgrader.fds()
    }

    /// How many connections the body tracks ([`Handle::track`]) right now.
    pub fn in_flight(&self) -> usize {
        self.upgrader.inner().in_flight()
    }

    /// Waits until the body tracks no connection (bound it with a timeout in tests).
    pub async fn wait_idle(&self) {
        self.upgrader.inner().tracker.wait_idle().await;
    }

    /// How many times the body called [`Handle::upgrade`] (each one failed: the double
    /// starts no process).
    pub fn upgrade_requests(&self) -> usize {
        self.seen.upgrade_requests.load(Ordering::Acquire)
    }

    /// Why the body's [`Handle::shutdown`] resolved, if it did.
    pub fn shutdown_reason(&self) -> Option<ExitReason> {
        self.upgrader.exit_reason()
    }
}

impl Default for TestService {
    fn default() -> TestService {
        TestService::new()
    }
}

impl std::fmt::Debug for TestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestService")
            .field("ready", &self.is_ready())
            .field("in_flight", &self.in_flight())
            .field("shutdown", &self.shutdown_reason())
            .field("upgrade_requests", &self.upgrade_requests())
            .finish()
    }
}

/// Shutdown begins (once: the first reason stays).
fn publish(inner: &Inner, reason: ExitReason) {
    inner.published.send_if_modified(|p| {
        let first = p.exit.is_none();
        if first {
            p.exit = Some(reason);
        }
        first
    });
}

/// Plays the lifecycle driver for the handle's requests, until the double and every handle
/// are gone.
async fn answer(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Msg>, seen: Arc<Seen>) {
    while let Some(msg) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match msg {
            Msg::Event(Event::Ready) => {
                seen.ready.send_replace(true);
            }
            Msg::Event(Event::Stop(_)) => publish(&inner, ExitReason::Stopped),
            Msg::Upgrade(reply) => {
                seen.upgrade_requests.fetch_add(1, Ordering::AcqRel);
                let _ = reply.send(Err(UpgradeError::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the test double starts no process (TestService::hand_over simulates a handover)",
                ))));
            }
            _ => {}
        }
    }
}
