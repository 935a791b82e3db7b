//! Overhead: the same hello server under the tableflip runtime, Go tableflip, ecdysis and on
//! plain tokio, loaded alike in rounds whose order rotates (A B C D, B C D A, ...), compared
//! by throughput and RSS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::load::{self, Counts, Limits, Protocol};
use crate::probe;
use crate::procs::free_addr;
use crate::procs::{self, WAIT};

/// The shape of the comparison.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) conns: usize,
    /// Rounds per server.
    pub(crate) rounds: usize,
    pub(crate) round: Duration,
}

/// One server's figures.
#[derive(Debug, Default)]
pub(crate) struct Server {
    pub(crate) name: String,
    /// Requests per second of every round.
    pub(crate) rps: Vec<f64>,
    pub(crate) counts: Counts,
    /// `VmRSS` once answering, before any load (KiB).
    pub(crate) idle_rss_kib: u64,
    /// `VmHWM` after all rounds (KiB).
    pub(crate) peak_rss_kib: u64,
    /// `RssAnon` after all rounds (KiB): private memory, without the shared code pages.
    pub(crate) anon_rss_kib: u64,
}

impl Server {
    /// The median of the rounds' throughputs.
    pub(crate) fn median_rps(&self) -> f64 {
        median(self.rps.clone())
    }
}

/// The throughput ratio `a / b`: the median of the ratios of the two servers' turns in the
/// same round, so that the machine's slow drifts cancel out.
pub(crate) fn paired_ratio(a: &Server, b: &Server) -> f64 {
    median(
        a.rps
            .iter()
            .zip(&b.rps)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| a / b)
            .collect(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the comparison of `servers` (name, program), each loaded alike in every round, in
/// an order that rotates from round to round; returns their figures in the same order.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    servers: &[(String, &Path)],
    plan: Plan,
    mut progress: impl FnMut(),
) -> Result<Vec<Server>, String> {
    let _sweep = procs::Sweep;
    let mut started = Vec::new();
    for (name, exe) in servers {
        let tag = format!("overhead-{}", started.len());
        let (pid, addr) = start(exe, &tag).map_err(|e| format!("{name}: {e}"))?;
        let idle_rss_kib = procs::memory_kib(pid).map_or(0, |m| m.rss);
        let server = Server {
            name: name.clone(),
            idle_rss_kib,
            ..Server::default()
        };
        started.push((server, pid, addr));
    }
    // Warm every server up, unmeasured.
    for (_, _, addr) in &started {
        round(rt, *addr, plan.conns, plan.round / 4)?;
    }
    let n = started.len();
    for r in 0..plan.rounds {
        for i in 0..n {
            let (server, _, addr) = &mut started[(r + i) % n];
            let (rps, counts) = round(rt, *addr, plan.conns, plan.round)?;
            server.rps.push(rps);
            server.counts.add(&counts);
            progress();
        }
    }
    let mut out = Vec::new();
    for (mut server, pid, _) in started {
        let m = procs::memory_kib(pid).ok_or_else(|| format!("pid {pid} is gone"))?;
        server.peak_rss_kib = m.peak;
        server.anon_rss_kib = m.anon;
        out.push(server);
    }
    Ok(out)
}

fn start(exe: &Path, tag: &str) -> Result<(i32, SocketAddr), String> {
    let addr = free_addr()?;
    let log = procs::scratch().join(format!("{tag}.log"));
    let (pid, _) = procs::spawn(&mut procs::service_command(
        exe,
        &[("ADDR", addr.to_string())],
        &log,
    ))
    .map_err(|e| format!("can't start {}: {e}", exe.display()))?;
    probe::poll(WAIT, || probe::hello(addr).ok().filter(|p| *p == pid)).ok_or_else(|| {
        format!(
            "{} did not answer; log:\n{}",
            exe.display(),
            procs::tail(&log, 20)
        )
    })?;
    Ok((pid, addr))
}

/// One round of `len`; returns requests per second and the counts.
fn round(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    conns: usize,
    len: Duration,
) -> Result<(f64, Counts), String> {
    let base = Instant::now();
    let limits = Limits {
        stop: Arc::new(AtomicBool::new(false)),
        deadline: base + len,
        max_per_conn: 100_000_000,
    };
    let outcome = rt
        .block_on(async {
            tokio::time::timeout(
                len + WAIT,
                load::run(addr, Protocol::Hello, conns, base, limits),
            )
            .await
        })
        .map_err(|_| "a load round did not end".to_string())?;
    let secs = base.elapsed().as_secs_f64();
    Ok((outcome.counts.ok as f64 / secs, outcome.counts))
}
