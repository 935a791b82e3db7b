//! The notify loop: under systemd, a task of the runtime that sends the driver a
//! [`Event::Tick`] every [`period`], after running the user's health check. The phase decides
//! what each tick means (`phase.rs`): a `WATCHDOG=1` ping if the check passed, an
//! `EXTEND_TIMEOUT_USEC=` while a start or an upgrade is in progress, a fresh
//! `STATUS=stopping: draining N connections` line during a stop.
//!
//! The pings come from the runtime's own tasks on purpose: a runtime whose worker threads
//! are all blocked (a wedged service) runs neither this loop nor the driver, so it stops
//! pinging, and systemd's watchdog (`WatchdogSec=`) kills and restarts it. A health check
//! adds what only the service knows (a database it can't reach, a queue that no longer
//! moves): while it fails or takes longer than the period, no ping is sent.

use std::sync::Arc;
use std::time::Duration;

use super::core::Inner;
use super::msg::Msg;
use super::phase::{Event, StatusLine};

/// How often the loop ticks without a watchdog (or with a slow one).
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// The shortest period, whatever `WATCHDOG_USEC` says.
const MIN_TICK: Duration = Duration::from_millis(10);
/// How far ahead each `EXTEND_TIMEOUT_USEC=` reaches, in ticks: a few ticks may be late
/// before systemd's own timeout applies again.
const EXTEND_TICKS: u32 = 3;

/// The tick period: [`TICK`], or a third of the watchdog interval if that is shorter
/// (systemd advises pinging at half of it; a third leaves room for a late tick).
pub(crate) fn period(watchdog: Option<Duration>) -> Duration {
    match watchdog {
        Some(w) => (w / 3).clamp(MIN_TICK, TICK),
        None => TICK,
    }
}

/// How long one `EXTEND_TIMEOUT_USEC=` should extend, `elapsed` into a start or upgrade
/// bounded by `timeout`; `None` once the bound has passed (the upgrade fails then, and
/// says so with `READY=1`).
pub(crate) fn extension(
    period: Duration,
    elapsed: Duration,
    timeout: Duration,
) -> Option<Duration> {
    let left = timeout.checked_sub(elapsed).filter(|l| !l.is_zero())?;
    // A little past the runtime's own bound, so that it is the runtime that gives up first.
    Some((period * EXTEND_TICKS).min(left + period))
}

/// The `STATUS=` line for `line`.
pub(crate) fn status_text(line: StatusLine, core: &Inner) -> String {
    let pid = std::process::id();
    match line {
        StatusLine::Serving => format!("serving (pid {pid})"),
        StatusLine::Upgrading(None) => {
            format!("upgrading: starting a new process (pid {pid} serves)")
        }
        StatusLine::Upgrading(Some(new)) => {
            format!("upgrading to pid {new}: waiting until it is ready (pid {pid} serves)")
        }
        StatusLine::UpgradeDeferred => format!(
            "serving (pid {pid}); upgrade requested: waiting for the previous process to exit"
        ),
        StatusLine::Draining => match core.in_flight() {
            1 => "stopping: draining 1 connection".to_owned(),
            n => format!("stopping: draining {n} connections"),
        },
    }
}

/// Starts the loop, if systemd listens.
pub(crate) fn spawn(core: Arc<Inner>) {
    if !core.systemd.is_active() {
        return;
    }
    let period = period(core.systemd.watchdog_interval());
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_healthy = true;
        loop {
            interval.tick().await;
            let healthy = check(&core, period).await;
            if healthy != was_healthy {
                if healthy {
                    tracing::info!("health check passes again: pinging systemd's watchdog");
                }
                was_healthy = healthy;
            }
            if core.tx.send(Msg::Event(Event::Tick { healthy })).is_err() {
                return;
            }
        }
    });
}

/// Runs the health check (if any), bounded by `period`.
async fn check(core: &Inner, period: Duration) -> bool {
    let Some(check) = core.health.get() else {
        return true;
    };
    match tokio::time::timeout(period, check()).await {
        Ok(Ok(())) => true,
        Ok(Err(why)) => {
            tracing::warn!(reason = %why, "health check failed: not pinging systemd's watchdog");
            false
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = period.as_millis() as u64,
                "health check timed out: not pinging systemd's watchdog"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_third_of_the_watchdog_within_bounds() {
        assert_eq!(period(None), TICK);
        assert_eq!(
            period(Some(Duration::from_millis(900))),
            Duration::from_millis(300)
        );
        assert_eq!(period(Some(Duration::from_secs(60))), TICK);
        assert_eq!(period(Some(Duration::from_micros(1))), MIN_TICK);
    }

    #[test]
    fn extensions_reach_a_few_ticks_ahead_and_end_with_the_upgrade_timeout() {
        let s = Duration::from_secs;
        assert_eq!(extension(s(1), s(0), s(60)), Some(s(3)));
        assert_eq!(extension(s(1), s(59), s(60)), Some(s(2)));
        assert_eq!(extension(s(1), s(60), s(60)), None);
        assert_eq!(extension(s(1), s(61), s(60)), None);
    }
}
