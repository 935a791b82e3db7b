//! Overhead: the same hello server under the tableflip runtime and on plain tokio, loaded
//! alike in alternating rounds (A B B A ...), compared by throughput and peak RSS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::cycles::free_addr;
use crate::load::{self, Counts, Limits, Protocol};
use crate::probe;
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

/// The throughput ratio `a / b`: the median of the ratios of rounds run back to back, so
/// that the machine's slow drifts cancel out.
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

/// Runs the comparison; returns (tableflip, plain tokio).
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    tableflip_exe: &Path,
    plain_exe: &Path,
    plan: Plan,
    mut progress: impl FnMut(),
) -> Result<(Server, Server), String> {
    let _sweep = procs::Sweep;
    let (tf_pid, tf_addr) = start(tableflip_exe, "overhead-tableflip")?;
    let (plain_pid, plain_addr) = start(plain_exe, "overhead-plain")?;
    let mut tf = Server::default();
    let mut plain = Server::default();
    for (server, pid) in [(&mut tf, tf_pid), (&mut plain, plain_pid)] {
        server.idle_rss_kib = procs::memory_kib(pid).map_or(0, |m| m.rss);
    }
    // Warm both up, unmeasured.
    for addr in [tf_addr, plain_addr] {
        round(rt, addr, plan.conns, plan.round / 4)?;
    }
    for r in 0..plan.rounds {
        let order = if r % 2 == 0 {
            [(&mut tf, tf_addr), (&mut plain, plain_addr)]
        } else {
            [(&mut plain, plain_addr), (&mut tf, tf_addr)]
        };
        for (server, addr) in order {
            let (rps, counts) = round(rt, addr, plan.conns, plan.round)?;
            server.rps.push(rps);
            server.counts.add(&counts);
            progress();
        }
    }
    for (server, pid) in [(&mut tf, tf_pid), (&mut plain, plain_pid)] {
        let m = procs::memory_kib(pid).ok_or_else(|| format!("pid {pid} is gone"))?;
        server.peak_rss_kib = m.peak;
        server.anon_rss_kib = m.anon;
    }
    Ok((tf, plain))
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
