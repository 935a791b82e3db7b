//! The user's health check, kept where the lifecycle state and the watchdog loop reach it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The user's health check, as stored.
pub(crate) type HealthCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Where the health check is kept (set once by the service, read by the loop).
#[derive(Default)]
pub(crate) struct Health {
    check: Mutex<Option<HealthCheck>>,
}

impl Health {
    /// Sets (or replaces) the health check.
    pub(crate) fn set(&self, check: HealthCheck) {
        *self.check.lock().unwrap_or_else(|e| e.into_inner()) = Some(check);
    }

    pub(crate) fn get(&self) -> Option<HealthCheck> {
        self.check.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
