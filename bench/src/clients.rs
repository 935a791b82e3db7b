//! Section 8: real HTTP clients across upgrades, the library's drain beside the naive one.
//!
//! `wrk` (HTTP/1.1 keep-alive) and `h2load` (HTTP/2 by prior knowledge, run after run with
//! `-n`: it does not reconnect after a GOAWAY, so a run counts every request it could not
//! send any more as failed) keep the `http` example (`tableflip::axum::serve`) and the
//! `http_naive` example (`axum::serve(..).with_graceful_shutdown(tf.shutdown())`) busy while
//! the bench upgrades them, in turns that alternate between the two. Every upgrade waits
//! for the new pid to answer and the old one to be reaped, as an upgrade needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::probe;
use crate::procs::{self, Reaper, WAIT};

/// The shape of the section: every server gets `turns` turns of `upgrades` upgrades.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) turns: usize,
    pub(crate) upgrades: usize,
    /// wrk's keep-alive connections.
    pub(crate) wrk_conns: usize,
    /// Steady load between an old process gone and the next signal.
    pub(crate) gap: Duration,
}

/// How long one h2load run or one wrk summary may take before it is killed.
const CLIENT_BOUND: Duration = Duration::from_secs(60);

/// What wrk and h2load saw on one server, every turn added up.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(crate) upgrades: usize,
    pub(crate) wrk_requests: u64,
    /// connect, read, write, timeout.
    pub(crate) wrk_socket_errors: [u64; 4],
    pub(crate) wrk_non_2xx: u64,
    pub(crate) h2_runs: u64,
    pub(crate) h2_total: u64,
    pub(crate) h2_succeeded: u64,
    pub(crate) h2_failed: u64,
    pub(crate) h2_errored: u64,
    pub(crate) h2_timeout: u64,
    /// Time under load, every turn together.
    pub(crate) elapsed: Duration,
}

impl Tally {
    fn wrk_errors(&self) -> u64 {
        self.wrk_socket_errors.iter().sum::<u64>() + self.wrk_non_2xx
    }

    /// Requests wrk or h2load did not get an answer to.
    pub(crate) fn lost(&self) -> u64 {
        self.wrk_errors() + self.h2_lost()
    }

    /// Requests h2load did not get an answer to.
    fn h2_lost(&self) -> u64 {
        self.h2_total.saturating_sub(self.h2_succeeded)
    }
}

/// One server of the section.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) server: &'static str,
    pub(crate) drain: &'static str,
    pub(crate) tally: Result<Tally, String>,
}

/// A server kept running between its turns.
struct Live {
    addr: SocketAddr,
    pid: i32,
    log: PathBuf,
    tag: String,
    tally: Tally,
}

/// Runs the section on `servers` (name, how it drains, executable).
pub(crate) fn run(
    servers: &[(&'static str, &'static str, &Path)],
    plan: Plan,
    mut progress: impl FnMut(&str),
) -> Vec<Row> {
    let mut live: Vec<Result<Live, String>> = servers
        .iter()
        .enumerate()
        .map(|(i, (_, _, exe))| start(exe, &format!("clients-{i}")))
        .collect();
    for _ in 0..plan.turns {
        for (l, (name, _, _)) in live.iter_mut().zip(servers) {
            let Ok(server) = l else { continue };
            if let Err(e) = turn(server, plan, || progress(name)) {
                *l = Err(e);
            }
        }
    }
    live.into_iter()
        .zip(servers)
        .map(|(l, (server, drain, _))| Row {
            server,
            drain,
            tally: l.map(|l| l.tally),
        })
        .collect()
}

fn start(exe: &Path, tag: &str) -> Result<Live, String> {
    let (addr, pid, log) = procs::start_http(
        exe,
        tag,
        &[
            ("RUST_LOG", "warn".into()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "20s".into()),
        ],
    )?;
    Ok(Live {
        addr,
        pid,
        log,
        tag: tag.to_owned(),
        tally: Tally::default(),
    })
}

/// One turn: wrk and h2load on the server while it is upgraded `plan.upgrades` times.
fn turn(l: &mut Live, plan: Plan, mut progress: impl FnMut()) -> Result<(), String> {
    let started = Instant::now();
    let url = format!("http://{}/", l.addr);
    let wrk_out = procs::scratch().join(format!("{}-wrk.txt", l.tag));
    let wrk = spawn_to_file(
        Command::new("wrk").args([
            "-t2",
            &format!("-c{}", plan.wrk_conns),
            "-d600s",
            "--timeout",
            "10s",
            &url,
        ]),
        &wrk_out,
    )
    .map_err(|e| format!("can't start wrk (Debian package wrk): {e}"))?;
    let h2 = H2load::start(url, procs::scratch().join(format!("{}-h2load", l.tag)));
    std::thread::sleep(Duration::from_millis(200));

    let upgraded = (|| {
        for _ in 0..plan.upgrades {
            let old = l.pid;
            procs::signal(old, Signal::SIGHUP)?;
            let new = probe::poll(WAIT, || probe::http(l.addr).ok().filter(|p| *p != old))
                .ok_or_else(|| {
                    format!(
                        "no new pid answered after SIGHUP to {old}; log:\n{}",
                        procs::tail(&l.log, 20)
                    )
                })?;
            Reaper::get().wait(old, WAIT).ok_or_else(|| {
                format!(
                    "old pid {old} did not exit; log:\n{}",
                    procs::tail(&l.log, 20)
                )
            })?;
            l.pid = new;
            l.tally.upgrades += 1;
            progress();
            std::thread::sleep(plan.gap);
        }
        Ok::<(), String>(())
    })();
    std::thread::sleep(Duration::from_millis(200));
    // wrk prints its summary on SIGINT.
    let _ = procs::signal(wrk, Signal::SIGINT);
    if Reaper::get().wait(wrk, CLIENT_BOUND).is_none() {
        let _ = procs::signal(wrk, Signal::SIGKILL);
    }
    let h2 = h2.finish();
    upgraded?;
    let t = &mut l.tally;
    t.elapsed += started.elapsed();
    let wrk_text = std::fs::read_to_string(&wrk_out).unwrap_or_default();
    let w = parse_wrk(&wrk_text).ok_or_else(|| format!("no wrk summary in:\n{wrk_text}"))?;
    t.wrk_requests += w.0;
    for (sum, n) in t.wrk_socket_errors.iter_mut().zip(w.1) {
        *sum += n;
    }
    t.wrk_non_2xx += w.2;
    t.h2_runs += h2.h2_runs;
    t.h2_total += h2.h2_total;
    t.h2_succeeded += h2.h2_succeeded;
    t.h2_failed += h2.h2_failed;
    t.h2_errored += h2.h2_errored;
    t.h2_timeout += h2.h2_timeout;
    Ok(())
}

/// Starts `cmd` with its stdout in `out`; the reaper collects it.
fn spawn_to_file(cmd: &mut Command, out: &Path) -> std::io::Result<i32> {
    let file = std::fs::File::create(out)?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(Stdio::null());
    procs::spawn(cmd).map(|(pid, _)| pid)
}

/// `N requests in ...`, the socket errors (connect, read, write, timeout) and the non-2xx
/// count of a wrk summary.
fn parse_wrk(text: &str) -> Option<(u64, [u64; 4], u64)> {
    let mut requests = None;
    let mut socket = [0u64; 4];
    let mut non_2xx = 0;
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            requests = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for (i, part) in rest.split(',').enumerate().take(4) {
                socket[i] = part.split_whitespace().last()?.parse().ok()?;
            }
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = n.trim().parse().ok()?;
        }
    }
    Some((requests?, socket, non_2xx))
}

/// h2load's `requests: N total, N started, N done, N succeeded, N failed, N errored, N
/// timeout` line, added to `t`; `false` if there is none.
fn add_h2load(t: &mut Tally, text: &str) -> bool {
    let Some(line) = text.lines().find(|l| l.starts_with("requests:")) else {
        return false;
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find(|part| part.trim_end().ends_with(name))
            .and_then(|part| part.split_whitespace().rev().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    t.h2_runs += 1;
    t.h2_total += field("total");
    t.h2_succeeded += field("succeeded");
    t.h2_failed += field("failed");
    t.h2_errored += field("errored");
    t.h2_timeout += field("timeout");
    true
}

/// h2load run after run (`-n 300 -c 4 -m 4`: four HTTP/2 connections, four streams each)
/// until [`H2load::finish`].
struct H2load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Tally>,
}

impl H2load {
    fn start(url: String, out: PathBuf) -> H2load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut t = Tally::default();
            for _ in 0..1_000_000 {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let mut cmd = Command::new("h2load");
                cmd.args(["-n", "300", "-c", "4", "-m", "4", &url]);
                let Ok(pid) = spawn_to_file(&mut cmd, &out) else {
                    break;
                };
                if Reaper::get().wait(pid, CLIENT_BOUND).is_none() {
                    let _ = procs::signal(pid, Signal::SIGKILL);
                    let _ = Reaper::get().wait(pid, WAIT);
                }
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                if !add_h2load(&mut t, &text) {
                    // No summary: every request of the run is lost.
                    t.h2_runs += 1;
                    t.h2_total += 300;
                    t.h2_errored += 300;
                }
            }
            t
        });
        H2load { stop, thread }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// The first of wrk and h2load that is not on `PATH`, if any. (Looked up, not run: the
/// bench's reaper collects every child's exit.)
pub(crate) fn missing_tool() -> Option<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["wrk", "h2load"].into_iter().find(|tool| {
        !std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The section as markdown.
pub(crate) fn markdown(rows: &Option<Result<Vec<Row>, String>>, plan: Plan) -> Vec<String> {
    let mut out = vec![
        String::new(),
        format!(
            "### 8. Real clients across upgrades: the library's drain and the naive one \
             (wrk, {} keep-alive connections; h2load `-n 300 -c 4 -m 4` run after run; \
             {} turns of {} upgrades per server, in turn)",
            plan.wrk_conns, plan.turns, plan.upgrades
        ),
        String::new(),
    ];
    let rows = match rows {
        None => {
            out.push("not run".into());
            return out;
        }
        Some(Err(e)) => {
            out.push(e.clone());
            return out;
        }
        Some(Ok(rows)) => rows,
    };
    out.push(
        "| server | drain | upgrades | wrk (HTTP/1.1 keep-alive): requests | wrk socket errors \
         (connect / read / write / timeout) | wrk non-2xx | h2load (HTTP/2): runs | requests \
         | succeeded | failed | errored | timeout | lost, all clients |"
            .into(),
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|".into());
    for r in rows {
        match &r.tally {
            Err(e) => out.push(format!(
                "| {} | {} | error: {} | | | | | | | | | | |",
                r.server,
                r.drain,
                e.lines().next().unwrap_or_default()
            )),
            Ok(t) => {
                let s = t.wrk_socket_errors;
                out.push(format!(
                    "| {} | {} | {} | {} | {} / {} / {} / {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.server,
                    r.drain,
                    t.upgrades,
                    t.wrk_requests,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    t.wrk_non_2xx,
                    t.h2_runs,
                    t.h2_total,
                    t.h2_succeeded,
                    t.h2_failed,
                    t.h2_errored,
                    t.h2_timeout,
                    t.lost()
                ));
            }
        }
    }
    out.push(String::new());
    out.push(
        "wrk's read errors are connections closed or reset under a request; h2load counts \
         as failed every request it could not send after a GOAWAY (it does not reconnect)."
            .into(),
    );
    out
}

/// The section as JSON.
pub(crate) fn json(rows: &Option<Result<Vec<Row>, String>>, plan: Plan) -> Value {
    match rows {
        None => Value::Null,
        Some(Err(e)) => json!({ "error": e }),
        Some(Ok(rows)) => json!({
            "plan": { "turns": plan.turns, "upgrades_per_turn": plan.upgrades,
                      "wrk_connections": plan.wrk_conns, "h2load": "-n 300 -c 4 -m 4" },
            "servers": rows.iter().map(|r| match &r.tally {
                Err(e) => json!({ "server": r.server, "drain": r.drain, "error": e }),
                Ok(t) => json!({
                    "server": r.server,
                    "drain": r.drain,
                    "upgrades": t.upgrades,
                    "seconds": t.elapsed.as_secs_f64(),
                    "wrk": {
                        "requests": t.wrk_requests,
                        "socket_errors": { "connect": t.wrk_socket_errors[0],
                            "read": t.wrk_socket_errors[1], "write": t.wrk_socket_errors[2],
                            "timeout": t.wrk_socket_errors[3] },
                        "non_2xx": t.wrk_non_2xx,
                    },
                    "h2load": {
                        "runs": t.h2_runs, "total": t.h2_total, "succeeded": t.h2_succeeded,
                        "failed": t.h2_failed, "errored": t.h2_errored, "timeout": t.h2_timeout,
                    },
                    "lost": t.lost(),
                }),
            }).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summaries_are_read() {
        let text = "Running 1m test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n\
                    12345 requests in 2.00s, 1.00MB read\n  Socket errors: connect 0, read 7, \
                    write 1, timeout 2\n  Non-2xx or 3xx responses: 3\nRequests/sec: 6000\n";
        assert_eq!(parse_wrk(text), Some((12345, [0, 7, 1, 2], 3)));
        assert_eq!(parse_wrk("nothing"), None);
    }

    #[test]
    fn h2load_summaries_are_read() {
        let mut t = Tally::default();
        let text = "finished in 20ms\nrequests: 300 total, 300 started, 290 done, 290 \
                    succeeded, 10 failed, 0 errored, 0 timeout\n";
        assert!(add_h2load(&mut t, text));
        assert_eq!((t.h2_total, t.h2_succeeded, t.h2_failed), (300, 290, 10));
        assert_eq!(t.h2_lost(), 10);
        assert!(!add_h2load(&mut t, "connect refused"));
    }
}
