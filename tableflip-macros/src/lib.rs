//! The `#[tableflip::main]` attribute: parsing and code generation only.
//!
//! Use it through the `tableflip` facade, which re-exports it. The attribute turns an
//! `async fn main` whose parameters are listeners into `Service` builder calls on the public
//! runtime API: nothing it generates is out of reach of hand-written code. For
//!
//! ```text
//! #[tableflip::main(pid_file = "/run/hello.pid", upgrade_timeout = "90s")]
//! async fn main(
//!     #[listener("tcp", ":8080")] http: tokio::net::TcpListener,
//!     tf: tableflip::Handle,
//! ) -> std::io::Result<()> {
//!     Ok(())
//! }
//! ```
//!
//! it generates
//!
//! ```text
//! fn main() -> ::std::process::ExitCode {
//!     ::tableflip::__private::assert_fits::<::tableflip::__private::Tcp, tokio::net::TcpListener>();
//!     // SAFETY: the first thing `main` does: no other thread exists yet.
//!     #[allow(unsafe_code)]
//!     unsafe {
//!         ::tableflip::init_env();
//!     }
//!     ::tableflip::Service::builder()
//!         .pid_file("/run/hello.pid")
//!         .upgrade_timeout(::std::time::Duration::from_millis(90000))
//!         .listener(::tableflip::ListenerSpec::new("http", "tcp", ":8080"))
//!         .run(|mut listeners, handle| {
//!             let http: tokio::net::TcpListener = listeners.take::<tokio::net::TcpListener>("http")?;
//!             let tf: tableflip::Handle = handle;
//!             ::core::result::Result::Ok(::tableflip::__private::body::<std::io::Result<()>, _>(
//!                 async move {
//!                     Ok(())
//!                 },
//!             ))
//!         })
//! }
//! ```
//!
//! The stages are one file each: `entry` runs them; `parse` (the options) and `params` (the function and its
//! parameters) build the small AST in `ast`, `validate` checks what involves several parts,
//! `expand` generates the code, and `fallback` is what is emitted on errors: every error as
//! a spanned `compile_error!`, and the user's function kept so that IDEs still work.
//! Addresses and durations are checked with the runtime's own parser, the `tableflip-addr`
//! crate.

#![deny(missing_docs)]

use proc_macro::TokenStream;

use tableflip_addr as addr;
mod ast;
mod entry;
mod expand;
mod fallback;
mod params;
mod parse;
mod validate;

/// Runs an `async fn` as a tableflip service: graceful, zero-downtime upgrades on `SIGHUP`.
///
/// Use it as `#[tableflip::main]`, through the `tableflip` crate, whose documentation of
/// [`tableflip::main`](https://docs.rs/tableflip/latest/tableflip/attr.main.html) lists the
/// options and parameters and shows the code it expands to.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::main(args.into(), item.into()).into()
}
