//! Graceful, zero-downtime upgrades for Rust network services.
//!
//! `kill -HUP <pid>` starts the new binary from the same path, hands it the very same
//! listening sockets, waits until it is ready, and only then lets the old process drain and
//! exit: not one connection is refused or reset. Wire-compatible with Go's
//! `github.com/cloudflare/tableflip` v1.2.3, so a Go service can be upgraded into a Rust one.
//!
//! Everything `#[tableflip::main]` generates is plain [`Service`] builder code; see the
//! README for the equivalent hand-written form.
//!
//! # API at a glance
//!
//! | item | what it is for |
//! |---|---|
//! | [`#[tableflip::main]`](macro@main) | an `async fn` whose parameters are listeners, run as a service |
//! | [`Service`] | the same, as a builder: [`ListenerSpec`]s, [`Signal`]s, [`ReadyMode`], timeouts, hooks, logging |
//! | [`Handle`] | the running service: [`shutdown`](Handle::shutdown), [`is_draining`](Handle::is_draining), [`track`](Handle::track) a connection, [`ready`](Handle::ready), [`upgrade`](Handle::upgrade), [`listen`](Handle::listen) at run time, [`add_file`](Handle::add_file)/[`file`](Handle::file) to carry state |
//! | [`Listeners`] | the declared listeners, taken by parameter name as any [`FromFd`] type |
//! | [`Upgrader`], [`Options`], [`Fds`] | Go tableflip's API, for a service without the builder |
//! | [`init`], [`init_env`] | `init`: read what the process inherited, early; `init_env` (`unsafe`, before any thread): remove the handshake's variables from the environment |
//! | [`AcceptBackoff`] | back off and log at a bounded rate when `accept` fails |
//! | [`Error`], [`UpgradeError`], [`AddrError`] | typed errors; every cause kept as `source()` |
//! | [`Network`], [`parse_duration`] | Go's network names and durations, as the attribute reads them |
//!
//! The environment variables `TABLEFLIP_PID_FILE`, `TABLEFLIP_UPGRADE_TIMEOUT` and
//! `TABLEFLIP_DRAIN_TIMEOUT` override the builder's settings at start-up.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// Runs an `async fn` as a tableflip service: graceful, zero-downtime upgrades on `SIGHUP`.
///
/// ```no_run
/// use tokio::io::AsyncWriteExt;
/// use tokio::net::TcpListener;
///
/// #[tableflip::main(pid_file = "/tmp/hello.pid")]
/// async fn main(
///     #[listener("tcp", "127.0.0.1:8080")] http: TcpListener,
///     tf: tableflip::Handle,
/// ) -> std::io::Result<()> {
///     loop {
///         tokio::select! {
///             conn = http.accept() => {
///                 let (mut conn, _) = conn?;
///                 conn.write_all(format!("hello from pid {}\n", std::process::id()).as_bytes()).await?;
///             }
///             _ = tf.shutdown() => return Ok(()),
///         }
///     }
/// }
/// ```
///
/// The function may have any name (`main` for a binary), must be `async`, and returns `()`
/// or `Result<(), E>` with `E: Debug`, as `main` does: an error is printed and the exit
/// code is 1. It becomes a plain `fn() -> std::process::ExitCode`.
///
/// # Options
///
/// Each is optional; each value is a literal. Unknown and repeated options are compile
/// errors that list the valid ones.
///
/// | option | meaning | default |
/// |---|---|---|
/// | `pid_file = "path"` | written atomically on every ready | none |
/// | `upgrade_timeout = "60s"` | how long a new process has to become ready before it is killed | 60s |
/// | `drain_timeout = "30s"` | how long the old process may drain after handing over or being stopped | 30s |
/// | `upgrade_signal = "SIGHUP"` | the signal that starts an upgrade | `"SIGHUP"` |
/// | `stop_signals = ["SIGTERM", "SIGINT"]` | the signals that start a graceful stop | both |
/// | `ready = "auto"` or `"manual"` | auto: ready once every listener is held; manual: the body calls `tf.ready()` | `"auto"` |
/// | `on_shutdown = path` or `[path, ...]` | `async fn(tableflip::ShutdownReason)`s run, in order, when shutdown begins | none |
/// | `flavor = "multi_thread"` or `"current_thread"` | the tokio runtime, as in `#[tokio::main]` | `"multi_thread"` |
/// | `worker_threads = 4` | the multi-threaded runtime's worker count | one per core |
/// | `subscriber = false` | install no `tracing` subscriber; the default one (stderr, `RUST_LOG`, no colours or timestamps when stderr is the journal) is never installed over one already set, and needs the `subscriber` feature (default) | `true` |
/// | `crate = "path"` | where the `tableflip` facade is, when renamed | `"tableflip"` |
///
/// Durations are written as in Go: `"500ms"`, `"30s"`, `"2m"`, `"1m30s"` (units `ns`, `us`,
/// `ms`, `s`, `m`, `h`) and checked at compile time. Signals are named as in
/// [`Signal`]; `SIGKILL`, `SIGSTOP` and the fault signals
/// can't be handled, and the upgrade signal can't also be a stop signal. Operators can
/// override `pid_file`, `upgrade_timeout` and `drain_timeout` at start-up through
/// `TABLEFLIP_PID_FILE`, `TABLEFLIP_UPGRADE_TIMEOUT` and `TABLEFLIP_DRAIN_TIMEOUT`.
///
/// # Parameters
///
/// | parameter | meaning |
/// |---|---|
/// | `#[listener("tcp", ":8080")] http: T` | a socket inherited from the previous process, activated by systemd, or bound |
/// | `#[listener("udp", env = "DNS_ADDR", default = ":53")] dns: T` | the address is read from `$DNS_ADDR` at start-up (required if there is no `default`) |
/// | `#[listener("tcp", ":8080", name = "http")] http: T` | also claims the systemd socket with `FileDescriptorName=http` |
/// | `tf: tableflip::Handle` | at most one: the running service's handle |
///
/// Networks are Go's: `tcp`, `tcp4`, `tcp6`, `unix`, `unixpacket` (stream listeners) and
/// `udp`, `udp4`, `udp6`, `unixgram` (packet sockets). Addresses are Go's too: `":8080"`,
/// `"127.0.0.1:0"`, `"[::1]:53"`, `"/run/app.sock"`, `"@abstract"` (Linux); literal ones
/// (and `default`s) are checked at compile time. The type `T` must fit the network, or the
/// error points at it:
///
/// | network | `T` |
/// |---|---|
/// | `tcp`, `tcp4`, `tcp6` | `tokio::net::TcpListener`, `std::net::TcpListener`, `std::os::fd::OwnedFd` |
/// | `unix` | `tokio::net::UnixListener`, `std::os::unix::net::UnixListener`, `OwnedFd` |
/// | `unixpacket` | `OwnedFd` |
/// | `udp`, `udp4`, `udp6` | `tokio::net::UdpSocket`, `std::net::UdpSocket`, `OwnedFd` |
/// | `unixgram` | `tokio::net::UnixDatagram`, `std::os::unix::net::UnixDatagram`, `OwnedFd` |
///
/// Every parameter is a plain name (`mut` allowed) and either a listener or the Handle.
/// `#[cfg]` and `#[cfg_attr]` on a parameter are rejected: the attribute would see them
/// unevaluated. A second runtime attribute such as `#[tokio::main]` is rejected too:
/// `#[tableflip::main]` builds the runtime.
///
/// # What it expands to
///
/// Only calls on the public API, so the same service can be written by hand: first
/// [`init_env`], which removes the handshake's variables from the environment, keeping
/// their values for the runtime (it is `unsafe` because changing the environment is only
/// sound before any thread exists; the attribute allows `unsafe_code` for that one call, so
/// a crate with `#![forbid(unsafe_code)]` writes the builder by hand without it: the
/// variables are then only kept from the processes an upgrade starts), then the builder.
/// This
/// ```no_run
/// # async fn flush(_: tableflip::ShutdownReason) {}
/// #[tableflip::main(
///     upgrade_signal = "SIGUSR2",
///     stop_signals = ["SIGTERM"],
///     drain_timeout = "5s",
///     ready = "manual",
///     on_shutdown = flush,
///     flavor = "current_thread",
/// )]
/// async fn main(
///     #[listener("udp", env = "DNS_ADDR", default = "127.0.0.1:8053", name = "dns")]
///     dns: tokio::net::UdpSocket,
///     tf: tableflip::Handle,
/// ) {
///     tf.ready().unwrap();
///     # let _ = dns;
/// }
/// ```
/// is the same as this:
/// ```no_run
/// # async fn flush(_: tableflip::ShutdownReason) {}
/// use tableflip::{ListenerSpec, ReadyMode, Service, Signal};
///
/// fn main() -> std::process::ExitCode {
///     // SAFETY: the first thing `main` does: no other thread exists yet.
///     unsafe { tableflip::init_env() };
///     Service::builder()
///         .upgrade_signal(Signal::SIGUSR2)
///         .stop_signals([Signal::SIGTERM])
///         .drain_timeout(std::time::Duration::from_secs(5))
///         .ready(ReadyMode::Manual)
///         .on_shutdown(flush)
///         .runtime(tokio::runtime::Builder::new_current_thread())
///         .listener(
///             ListenerSpec::from_env("dns", "udp", "DNS_ADDR", Some("127.0.0.1:8053")).name("dns"),
///         )
///         .run(|mut listeners, tf| {
///             let dns: tokio::net::UdpSocket = listeners.take("dns")?;
///             Ok(async move {
///                 tf.ready().unwrap();
///                 # let _ = dns;
///             })
///         })
/// }
/// ```
#[doc(inline)]
pub use tableflip_macros::main;

#[doc(inline)]
pub use tableflip_runtime::*;

/// Support for the code `#[tableflip::main]` generates. Not public API: no stability promise.
#[doc(hidden)]
pub mod __private;

/// The README's code blocks, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
