//! Upgrades under load: 64 clients keep the `http` example busy while the driver upgrades
//! it again and again; then every latency is sorted into upgrade windows (signal to old
//! process gone) and steady state.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cycles::{Cycle, free_addr};
use crate::load::{self, Limits, Outcome, Protocol};
use crate::probe;
use crate::procs::{self, Reaper, WAIT};
use crate::stats::Summary;

/// The shape of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) conns: usize,
    pub(crate) upgrades: usize,
    /// Load before the first upgrade.
    pub(crate) warmup: Duration,
    /// Steady load between an old process gone and the next signal.
    pub(crate) gap: Duration,
    /// Load after the last upgrade.
    pub(crate) tail: Duration,
}

/// What one run saw.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) cycles: Vec<Cycle>,
    pub(crate) outcome: Outcome,
    pub(crate) elapsed: Duration,
    pub(crate) steady: Summary,
    pub(crate) during: Summary,
    /// The slowest requests: latency (ms) and start relative to the nearest upgrade
    /// signal (ms).
    pub(crate) slowest: Vec<(f64, f64)>,
}

/// Samples that start this early are connection set-up, not steady state.
const SETTLE: Duration = Duration::from_millis(200);

/// Starts the service at `exe`, loads it with `protocol`, upgrades it `plan.upgrades` times.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    exe: &Path,
    tag: &str,
    protocol: Protocol,
    plan: Plan,
    mut progress: impl FnMut(),
) -> Result<Run, String> {
    let _sweep = procs::Sweep;
    let addr = free_addr()?;
    let log = procs::scratch().join(format!("{tag}.log"));
    let (mut pid, _) = procs::spawn(&mut procs::service_command(
        exe,
        &[("ADDR", addr.to_string())],
        &log,
    ))
    .map_err(|e| format!("can't start {}: {e}", exe.display()))?;
    let first = pid;
    probe::poll(WAIT, || probe::http(addr).ok().filter(|p| *p == first))
        .ok_or_else(|| format!("http did not answer; log:\n{}", procs::tail(&log, 20)))?;

    let base = Instant::now();
    let per_upgrade = plan.gap + Duration::from_secs(2);
    let limits = Limits {
        stop: Arc::new(AtomicBool::new(false)),
        deadline: base + plan.warmup + plan.tail + per_upgrade * plan.upgrades as u32 + WAIT,
        max_per_conn: 10_000_000,
    };
    let load = rt.spawn(load::run(addr, protocol, plan.conns, base, limits.clone()));

    let driven = drive(addr, &mut pid, &log, base, plan, &mut progress);
    limits
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let outcome = rt
        .block_on(async { tokio::time::timeout(WAIT, load).await })
        .map_err(|_| "the load did not stop".to_string())?
        .map_err(|e| format!("load task: {e}"))?;
    let elapsed = base.elapsed();
    let windows = driven?;
    let cycles = windows.iter().map(|w| w.1).collect();
    dump(tag, &outcome, &windows);
    let (steady, during) = split(&outcome, &windows);
    let slowest = slowest(&outcome, &windows, 5);
    Ok(Run {
        cycles,
        outcome,
        elapsed,
        steady,
        during,
        slowest,
    })
}

/// An upgrade window (µs after base: signal, old process gone) and its cycle.
type Window = ((u64, u64), Cycle);

fn drive(
    addr: SocketAddr,
    pid: &mut i32,
    log: &Path,
    base: Instant,
    plan: Plan,
    progress: &mut impl FnMut(),
) -> Result<Vec<Window>, String> {
    let us = |t: Instant| (t - base).as_micros() as u64;
    let mut windows = Vec::with_capacity(plan.upgrades);
    std::thread::sleep(plan.warmup);
    for _ in 0..plan.upgrades {
        let old = *pid;
        let t0 = Instant::now();
        procs::signal(old, Signal::SIGHUP)?;
        let new = probe::poll(WAIT, || probe::http(addr).ok().filter(|p| *p != old)).ok_or_else(
            || {
                format!(
                    "no new pid answered after SIGHUP to {old}; log:\n{}",
                    procs::tail(log, 20)
                )
            },
        )?;
        let ready = t0.elapsed();
        let exit = Reaper::get()
            .wait(old, WAIT)
            .ok_or_else(|| format!("old pid {old} did not exit; log:\n{}", procs::tail(log, 20)))?;
        *pid = new;
        windows.push((
            (us(t0), us(exit.at)),
            Cycle {
                ready,
                gone: exit.at - t0,
            },
        ));
        progress();
        std::thread::sleep(plan.gap);
    }
    std::thread::sleep(plan.tail);
    Ok(windows)
}

/// Latencies of requests that overlap an upgrade window, and of the others (after the
/// first [`SETTLE`]).
fn split(outcome: &Outcome, windows: &[Window]) -> (Summary, Summary) {
    let settle = SETTLE.as_micros() as u64;
    let mut steady = Vec::new();
    let mut during = Vec::new();
    for s in &outcome.samples {
        let (a, b) = (s.start_us, s.start_us + s.latency_us);
        let ms = s.latency_us as f64 / 1e3;
        if windows.iter().any(|((w0, w1), _)| a <= *w1 && b >= *w0) {
            during.push(ms);
        } else if a >= settle {
            steady.push(ms);
        }
    }
    (Summary::of(steady), Summary::of(during))
}

/// The `n` slowest requests, with their start relative to the nearest upgrade signal.
fn slowest(outcome: &Outcome, windows: &[Window], n: usize) -> Vec<(f64, f64)> {
    let mut v: Vec<_> = outcome.samples.iter().collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.latency_us));
    v.iter()
        .take(n)
        .map(|s| {
            let rel = windows
                .iter()
                .map(|((w0, _), _)| s.start_us as f64 - *w0 as f64)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(f64::NAN);
            (s.latency_us as f64 / 1e3, rel / 1e3)
        })
        .collect()
}

/// With `$TABLEFLIP_BENCH_SAMPLES` set to a directory, writes every latency and every upgrade
/// window of the run there as CSV (µs after the run's start), for a closer look.
fn dump(tag: &str, outcome: &Outcome, windows: &[Window]) {
    let Some(dir) = std::env::var_os("TABLEFLIP_BENCH_SAMPLES") else {
        return;
    };
    let dir = Path::new(&dir);
    let mut samples = String::from("start_us,latency_us\n");
    for s in &outcome.samples {
        samples += &format!("{},{}\n", s.start_us, s.latency_us);
    }
    let mut wins = String::from("signal_us,gone_us,answered_us\n");
    for ((w0, w1), c) in windows {
        wins += &format!("{w0},{w1},{}\n", w0 + c.ready.as_micros() as u64);
    }
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join(format!("{tag}-samples.csv")), samples);
    let _ = std::fs::write(dir.join(format!("{tag}-windows.csv")), wins);
}
