//! What a service body may return, and how it becomes the process's outcome.

use std::fmt;

/// What a service body may return: `()` or `Result<(), E>` with `E: Debug`, as with `main`.
#[diagnostic::on_unimplemented(
    message = "`main` must return `()` or `Result<(), E>` with `E: Debug`, not `{Self}`",
    label = "this return type"
)]
pub trait Outcome {
    /// `Err` with the error's `Debug` form, as std prints it.
    fn into_outcome(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Debug> Outcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}
