//! Upgrades under load: 64 clients keep an HTTP server busy (the `http` example, and its
//! Go tableflip and ecdysis peers) while the driver upgrades it again and again, in turns
//! that alternate between the servers; then every latency is sorted into upgrade windows
//! (signal to old process gone) and steady state.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cycles::Cycle;
use crate::load::{self, Counts, Limits, Outcome, Protocol};
use crate::probe;
use crate::procs::{self, Reaper, WAIT};
use crate::stats::Summary;

/// The shape of the section: every server gets `rounds` turns of `upgrades` upgrades each,
/// in turn with the others.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) conns: usize,
    pub(crate) rounds: usize,
    /// Upgrades per turn.
    pub(crate) upgrades: usize,
    /// Load before the first upgrade of a turn.
    pub(crate) warmup: Duration,
    /// Steady load between an old process gone and the next signal.
    pub(crate) gap: Duration,
    /// Load after the last upgrade of a turn.
    pub(crate) tail: Duration,
}

/// What every turn of one server saw, added up.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) cycles: Vec<Cycle>,
    pub(crate) counts: Counts,
    /// The first few failure messages.
    pub(crate) errors: Vec<String>,
    /// Time under load, all turns together.
    pub(crate) elapsed: Duration,
    steady_ms: Vec<f64>,
    during_ms: Vec<f64>,
    /// The slowest requests: latency (ms) and start relative to the nearest upgrade
    /// signal (ms).
    pub(crate) slowest: Vec<(f64, f64)>,
}

impl Run {
    /// Latencies of requests that overlapped no upgrade.
    pub(crate) fn steady(&self) -> Summary {
        Summary::of(self.steady_ms.iter().copied())
    }

    /// Latencies of requests that overlapped an upgrade window.
    pub(crate) fn during(&self) -> Summary {
        Summary::of(self.during_ms.iter().copied())
    }
}

/// Samples that start this early in a turn are connection set-up, not steady state.
const SETTLE: Duration = Duration::from_millis(200);

/// A server kept running between its turns.
pub(crate) struct Live {
    addr: SocketAddr,
    pid: i32,
    log: std::path::PathBuf,
    tag: String,
    pub(crate) run: Run,
}

impl Live {
    /// Starts the service at `exe` on a free port and waits until it answers.
    pub(crate) fn start(exe: &Path, tag: &str) -> Result<Live, String> {
        let (addr, pid, log) = procs::start_http(exe, tag, &[])?;
        Ok(Live {
            addr,
            pid,
            log,
            tag: tag.to_owned(),
            run: Run::default(),
        })
    }

    /// One turn: loads the server with `protocol` and upgrades it `plan.upgrades` times.
    pub(crate) fn turn(
        &mut self,
        rt: &tokio::runtime::Runtime,
        protocol: Protocol,
        plan: Plan,
        mut progress: impl FnMut(),
    ) -> Result<(), String> {
        let base = Instant::now();
        let per_upgrade = plan.gap + Duration::from_secs(2);
        let limits = Limits {
            stop: Arc::new(AtomicBool::new(false)),
            deadline: base + plan.warmup + plan.tail + per_upgrade * plan.upgrades as u32 + WAIT,
            max_per_conn: 10_000_000,
        };
        let load = rt.spawn(load::run(
            self.addr,
            protocol,
            plan.conns,
            base,
            limits.clone(),
        ));
        let driven = drive(
            self.addr,
            &mut self.pid,
            &self.log,
            base,
            plan,
            &mut progress,
        );
        limits
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let outcome = rt
            .block_on(async { tokio::time::timeout(WAIT, load).await })
            .map_err(|_| "the load did not stop".to_string())?
            .map_err(|e| format!("load task: {e}"))?;
        let windows = driven?;
        dump(&self.tag, &outcome, &windows);
        let r = &mut self.run;
        r.elapsed += base.elapsed();
        r.cycles.extend(windows.iter().map(|w| w.1));
        r.counts.add(&outcome.counts);
        for e in &outcome.errors {
            if r.errors.len() < 10 {
                r.errors.push(e.clone());
            }
        }
        split(&outcome, &windows, &mut r.steady_ms, &mut r.during_ms);
        r.slowest.extend(slowest(&outcome, &windows, 5));
        r.slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
        r.slowest.truncate(5);
        Ok(())
    }
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

/// Adds the latencies of requests that overlap an upgrade window to `during`, and of the
/// others (after the first [`SETTLE`]) to `steady`.
fn split(outcome: &Outcome, windows: &[Window], steady: &mut Vec<f64>, during: &mut Vec<f64>) {
    let settle = SETTLE.as_micros() as u64;
    for s in &outcome.samples {
        let (a, b) = (s.start_us, s.start_us + s.latency_us);
        let ms = s.latency_us as f64 / 1e3;
        if windows.iter().any(|((w0, w1), _)| a <= *w1 && b >= *w0) {
            during.push(ms);
        } else if a >= settle {
            steady.push(ms);
        }
    }
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
    let append = |name: String, text: String| {
        use std::io::Write;
        let path = dir.join(name);
        let fresh = !path.exists();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = f {
            // Every turn has its own time base; the header is written once.
            let body = if fresh {
                &text[..]
            } else {
                text.split_once('\n').map_or("", |x| x.1)
            };
            let _ = f.write_all(body.as_bytes());
        }
    };
    append(format!("{tag}-samples.csv"), samples);
    append(format!("{tag}-windows.csv"), wins);
}
