//! What generated code reaches. Not public API.

pub use tableflip_runtime as runtime;
pub use tokio;

/// Pins the output type of the body's future, so that `?` inside it infers its error type
/// from the declared return type of `main`.
pub fn body<R, F: core::future::Future<Output = R>>(f: F) -> F {
    f
}
