//! The results: markdown tables for people, JSON for tools, and the targets of issue 5.

mod json;

use serde_json::{Value, json};

use crate::cycles::Record;
use crate::load::{Counts, Protocol};
use crate::overhead::{self, Server};
use crate::probe::PROBE_INTERVAL;
use crate::stats::{Summary, ratio};
use crate::under_load::Run;

/// One subject of the cycle sections.
#[derive(Debug)]
pub(crate) struct CycleRow {
    /// `upgrade` or `growth`.
    pub(crate) section: &'static str,
    /// The subject (for growth: the listener count).
    pub(crate) name: String,
    pub(crate) record: Record,
}

impl CycleRow {
    pub(crate) fn new(section: &'static str, name: &str) -> CycleRow {
        CycleRow {
            section,
            name: name.to_owned(),
            record: Record::default(),
        }
    }

    fn ready(&self) -> Summary {
        Summary::of(
            self.record
                .cycles
                .iter()
                .map(|c| c.ready.as_secs_f64() * 1e3),
        )
    }

    fn gone(&self) -> Summary {
        Summary::of(
            self.record
                .cycles
                .iter()
                .map(|c| c.gone.as_secs_f64() * 1e3),
        )
    }
}

/// One run of the load section.
#[derive(Debug)]
pub(crate) struct LoadRow {
    /// Which server, for the table.
    pub(crate) server: &'static str,
    pub(crate) protocol: Protocol,
    pub(crate) run: Result<Run, String>,
}

/// Everything one run measured.
pub(crate) struct Report {
    quick: bool,
    examples_profile: &'static str,
    conns: usize,
    load_start: String,
    load_end: String,
    /// The product's commit, and whether the tree had changes.
    revision: String,
    pub(crate) cycles: Vec<CycleRow>,
    pub(crate) load: Vec<LoadRow>,
    pub(crate) overhead: Option<Result<(Server, Server), String>>,
    pub(crate) overhead_plan: overhead::Plan,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// This process's nice value (from `/proc/self/stat`).
fn niceness() -> i64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            // Fields after the command name start at field 3 (state); nice is field 19.
            rest.split_whitespace().nth(16)?.parse().ok()
        })
        .unwrap_or(0)
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The shellflip version in the bench's lockfile.
fn shellflip_version() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"shellflip\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = ")) {
                return v.trim_matches('"').to_owned();
            }
        }
    }
    "?".into()
}

/// `git rev-parse --short HEAD` of the product, with a note if its tree had changes (read
/// only; runs before the reaper starts).
fn revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(crate::bins::product_dir())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown".into(),
        Some(rev) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{rev} with uncommitted changes"),
            _ => rev,
        },
    }
}

fn first_line(e: &str) -> &str {
    e.lines().next().unwrap_or("")
}

fn x(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "-".into()
    }
}

fn mode_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Hello => "hello",
        Protocol::HttpClose => "one request per connection",
        Protocol::HttpKeepAlive => "keep-alive",
    }
}

fn failed_cell(c: &Counts) -> String {
    let parts: Vec<String> = [
        ("refused", c.refused),
        ("reset", c.reset),
        ("short read", c.short_read),
        ("timeout", c.timeout),
        ("other", c.other),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        format!("{} ({})", c.failed(), parts.join(", "))
    }
}

fn counts_json(c: &Counts) -> Value {
    json!({
        "ok": c.ok, "failed": c.failed(), "refused": c.refused, "reset": c.reset,
        "short_read": c.short_read, "timeout": c.timeout, "other": c.other,
        "retried": c.retried,
    })
}

/// A target of issue 5 and how this run fared.
struct Target {
    what: &'static str,
    figure: String,
    met: Option<bool>,
}

impl Report {
    pub(crate) fn new(quick: bool, examples_profile: &'static str, conns: usize) -> Report {
        Report {
            quick,
            examples_profile,
            conns,
            load_start: loadavg(),
            load_end: String::new(),
            revision: revision(),
            cycles: Vec::new(),
            load: Vec::new(),
            overhead: None,
            overhead_plan: crate::QUICK.overhead,
        }
    }

    /// Notes the machine's load at the end.
    pub(crate) fn finish(&mut self) {
        self.load_end = loadavg();
    }

    /// Did any section fail to run?
    pub(crate) fn errors(&self) -> bool {
        self.cycles.iter().any(|r| r.record.error.is_some())
            || self.load.iter().any(|l| l.run.is_err())
            || matches!(self.overhead, Some(Err(_)))
    }

    fn command(&self) -> &'static str {
        if self.quick {
            "cargo run --release --manifest-path bench/Cargo.toml -- --quick"
        } else {
            "cargo run --release --manifest-path bench/Cargo.toml"
        }
    }

    fn row(&self, section: &str, name: &str) -> Option<&CycleRow> {
        self.cycles
            .iter()
            .find(|r| r.section == section && r.name == name)
    }

    fn floor_ratios(&self, row: &CycleRow) -> (f64, f64) {
        match self.row("upgrade", "floor") {
            Some(f) => (
                ratio(row.ready().p50, f.ready().p50),
                ratio(row.gone().p50, f.gone().p50),
            ),
            None => (f64::NAN, f64::NAN),
        }
    }

    fn growth_ratios(&self, row: &CycleRow) -> (f64, f64) {
        match self.row("growth", "1") {
            Some(one) => (
                ratio(row.ready().p50, one.ready().p50),
                ratio(row.gone().p50, one.gone().p50),
            ),
            None => (f64::NAN, f64::NAN),
        }
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let load_failed: Option<u64> = self
            .load
            .iter()
            .map(|l| l.run.as_ref().ok().map(|r| r.outcome.counts.failed()))
            .sum();
        t.push(Target {
            what: "failed requests under load: 0",
            figure: load_failed.map_or("-".into(), |n| n.to_string()),
            met: load_failed.map(|n| n == 0),
        });
        if let Some(up) = self.row("upgrade", "tableflip `hello`") {
            let (r, g) = self.floor_ratios(up);
            t.push(Target {
                what: "upgrade cycle p50 ≤ 2× the floor",
                figure: format!("answers {}, gone {}", x(r), x(g)),
                met: (r.is_finite() && g.is_finite()).then_some(r <= 2.0 && g <= 2.0),
            });
        }
        if let Some(big) = self.row("growth", "1000") {
            let (r, g) = self.growth_ratios(big);
            t.push(Target {
                what: "1000 listeners ≤ 3× one listener",
                figure: format!("answers {}, gone {}", x(r), x(g)),
                met: (r.is_finite() && g.is_finite()).then_some(r <= 3.0 && g <= 3.0),
            });
        }
        if let Some(Ok((tf, plain))) = &self.overhead {
            let r = crate::overhead::paired_ratio(tf, plain);
            t.push(Target {
                what: "throughput ratio ≥ 0.98",
                figure: format!("{r:.3}"),
                met: r.is_finite().then_some(r >= 0.98),
            });
            let d = tf.peak_rss_kib as i64 - plain.peak_rss_kib as i64;
            t.push(Target {
                what: "RSS overhead < 1 MiB",
                figure: format!("{d:+} KiB"),
                met: Some(d < 1024),
            });
        }
        let p99s: Vec<(String, f64)> = self
            .load
            .iter()
            .filter_map(|l| {
                let r = l.run.as_ref().ok()?;
                let name = format!("{} {}", l.server, mode_name(l.protocol));
                Some((name, ratio(r.during.p99, r.steady.p99)))
            })
            .collect();
        if !p99s.is_empty() {
            t.push(Target {
                what: "p99 latency during upgrades ≤ 3× steady state",
                figure: p99s
                    .iter()
                    .map(|(name, v)| format!("{name} {}", x(*v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                met: Some(p99s.iter().all(|(_, v)| *v <= 3.0)),
            });
        }
        let retried: Vec<String> = self
            .load
            .iter()
            .filter(|l| l.protocol == Protocol::HttpKeepAlive)
            .filter_map(|l| {
                let r = l.run.as_ref().ok()?;
                Some(format!("{} {}", l.server, r.outcome.counts.retried))
            })
            .collect();
        if !retried.is_empty() {
            t.push(Target {
                what: "keep-alive \"retried\" (better still: 0)",
                figure: retried.join(", "),
                met: None,
            });
        }
        t
    }

    pub(crate) fn markdown(&self) -> String {
        let mut o = String::new();
        let mut line = |s: &str| {
            o.push_str(s);
            o.push('\n');
        };
        line("## tableflip benchmark");
        line("");
        line(&format!(
            "Machine: {} × {}, Linux {}; load average {} at the start, {} at the end.  ",
            nproc(),
            cpu_model(),
            kernel(),
            self.load_start,
            self.load_end
        ));
        let nice = niceness();
        line(&format!(
            "Command: `{}{}`; product revision {}.",
            if nice != 0 {
                format!("nice -n {nice} ")
            } else {
                String::new()
            },
            self.command(),
            self.revision
        ));
        if self.quick {
            line("");
            line(&format!(
                "**Quick run** (CI smoke test): tiny counts, examples in the {} profile; \
                 the figures mean nothing.",
                self.examples_profile
            ));
        }
        self.md_cycles(&mut line);
        self.md_growth(&mut line);
        self.md_load(&mut line);
        self.md_overhead(&mut line);
        line("");
        line("### Targets (issue 5)");
        line("");
        line("| target | this run | met |");
        line("|---|---|---|");
        for t in self.targets() {
            let met = match t.met {
                _ if self.quick => "not judged (quick run)",
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            line(&format!("| {} | {} | {met} |", t.what, t.figure));
        }
        o
    }

    fn md_cycles(&self, line: &mut impl FnMut(&str)) {
        let rounds = self
            .cycles
            .iter()
            .map(|r| r.record.cycles.len())
            .max()
            .unwrap_or(0);
        line("");
        line(&format!(
            "### 1–3. Upgrade cycle, the floor and a peer ({rounds} rounds, all subjects cycled in turn)"
        ));
        line("");
        line(
            "| subject | restart | n | signal → new pid answers, ms (p50 / p99 / max) | \
             signal → old pid gone, ms (p50 / p99 / max) | p50 ÷ floor (answers, gone) |",
        );
        line("|---|---|---|---|---|---|");
        for row in self.cycles.iter().filter(|r| r.section == "upgrade") {
            let (how, name) = match row.name.as_str() {
                "floor" => (
                    "fork+exec of a program that writes 1 byte to an inherited pipe \
                     (spawn → byte read, → reaped)",
                    "floor".to_owned(),
                ),
                "shellflip" => (
                    "SIGUSR1, its `restarter` example's pattern; **does not hand over \
                     listeners**: the new process binds a new port",
                    format!("shellflip {}", shellflip_version()),
                ),
                _ => ("SIGHUP; the listener is handed over", row.name.clone()),
            };
            line(&self.cycle_line(&name, how, row, self.floor_ratios(row)));
        }
        line("");
        line(&format!(
            "\"Answers\": a new pid in a fresh connection's greeting (probed every {} µs); \
             \"gone\": the old process exited and was reaped by the bench (its subreaper).",
            PROBE_INTERVAL.as_micros()
        ));
    }

    fn cycle_line(&self, name: &str, how: &str, row: &CycleRow, r: (f64, f64)) -> String {
        if let Some(e) = &row.record.error {
            return format!("| {name} | {how} | - | error: {} | | |", first_line(e));
        }
        format!(
            "| {name} | {how} | {} | {} | {} | {}, {} |",
            row.record.cycles.len(),
            row.ready().cell(),
            row.gone().cell(),
            x(r.0),
            x(r.1)
        )
    }

    fn md_growth(&self, line: &mut impl FnMut(&str)) {
        line("");
        line("### 4. Growth: one service declaring 1 to 1000 listeners");
        line("");
        line(
            "| listeners | n | signal → new pid answers, ms (p50 / p99 / max) | \
             signal → old pid gone, ms (p50 / p99 / max) | p50 ÷ 1 listener (answers, gone) |",
        );
        line("|---|---|---|---|---|");
        for row in self.cycles.iter().filter(|r| r.section == "growth") {
            if let Some(why) = &row.record.skipped {
                line(&format!("| {} | - | {why} | | |", row.name));
                continue;
            }
            if let Some(e) = &row.record.error {
                line(&format!(
                    "| {} | - | error: {} | | |",
                    row.name,
                    first_line(e)
                ));
                continue;
            }
            let (a, g) = self.growth_ratios(row);
            line(&format!(
                "| {} | {} | {} | {} | {}, {} |",
                row.name,
                row.record.cycles.len(),
                row.ready().cell(),
                row.gone().cell(),
                x(a),
                x(g)
            ));
        }
        line("");
        line(
            "The bench's `many_listeners` service: `$ADDR` plus N−1 listeners on \
             `127.0.0.1:0`, each accepting; all are handed over at every upgrade.",
        );
    }

    fn md_load(&self, line: &mut impl FnMut(&str)) {
        line("");
        line(&format!(
            "### 5. Under load: the `http` example, {} connections kept busy through upgrades",
            self.conns
        ));
        line("");
        line(
            "| server | mode | upgrades (answers / gone p50, ms) | requests done | req/s | failed | \
             retried | steady latency, ms (p50 / p99 / max) | during upgrades, ms \
             (p50 / p99 / max) | p99 during ÷ steady |",
        );
        line("|---|---|---|---|---|---|---|---|---|---|");
        for l in &self.load {
            let p = &l.protocol;
            match &l.run {
                Err(e) => line(&format!(
                    "| {} | {} | error: {} | | | | | | | |",
                    l.server,
                    mode_name(*p),
                    first_line(e)
                )),
                Ok(r) => {
                    let ready = Summary::of(r.cycles.iter().map(|c| c.ready.as_secs_f64() * 1e3));
                    let gone = Summary::of(r.cycles.iter().map(|c| c.gone.as_secs_f64() * 1e3));
                    let c = &r.outcome.counts;
                    line(&format!(
                        "| {} | {} | {} ({} / {}) | {} | {:.0} | {} | {} | {} | {} | {} |",
                        l.server,
                        mode_name(*p),
                        r.cycles.len(),
                        crate::stats::ms(ready.p50),
                        crate::stats::ms(gone.p50),
                        c.ok,
                        c.ok as f64 / r.elapsed.as_secs_f64(),
                        failed_cell(c),
                        if *p == Protocol::HttpKeepAlive {
                            c.retried.to_string()
                        } else {
                            "-".into()
                        },
                        r.steady.cell(),
                        r.during.cell(),
                        x(ratio(r.during.p99, r.steady.p99)),
                    ));
                }
            }
        }
        line("");
        line(
            "A request is \"during upgrades\" if it overlaps a window from the signal to the \
             old process gone. \"Retried\": on a reused keep-alive connection, the server \
             closed before any byte of the answer; the client retries once on a new \
             connection (as hyper's does) and that retry counts as any request.",
        );
    }

    fn md_overhead(&self, line: &mut impl FnMut(&str)) {
        let plan = self.overhead_plan;
        line("");
        line(&format!(
            "### 6. Overhead: `hello` on tableflip against the same server on plain tokio \
             ({} rounds of {:?} each, alternating, {} connections)",
            plan.rounds, plan.round, plan.conns
        ));
        line("");
        match &self.overhead {
            None => line("not run"),
            Some(Err(e)) => line(&format!("error: {}", first_line(e))),
            Some(Ok((tf, plain))) => {
                line(
                    "| server | req/s (median; min–max) | failed | RSS idle (KiB) | \
                     peak RSS, VmHWM (KiB) | private RSS after, RssAnon (KiB) |",
                );
                line("|---|---|---|---|---|---|");
                for (name, s) in [("tableflip `hello`", tf), ("plain tokio", plain)] {
                    let min = s.rps.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = s.rps.iter().copied().fold(0.0, f64::max);
                    line(&format!(
                        "| {name} | {:.0} ({min:.0}–{max:.0}) | {} | {} | {} | {} |",
                        s.median_rps(),
                        failed_cell(&s.counts),
                        s.idle_rss_kib,
                        s.peak_rss_kib,
                        s.anon_rss_kib
                    ));
                }
                line(&format!(
                    "| tableflip ÷ plain (req/s: median of back-to-back rounds; RSS: difference) \
                     | {:.3} | | {:+} | {:+} | {:+} |",
                    crate::overhead::paired_ratio(tf, plain),
                    tf.idle_rss_kib as i64 - plain.idle_rss_kib as i64,
                    tf.peak_rss_kib as i64 - plain.peak_rss_kib as i64,
                    tf.anon_rss_kib as i64 - plain.anon_rss_kib as i64,
                ));
                line("");
                line(
                    "VmHWM counts the program's code pages too (shared through the page \
                     cache); the `hello` binary is larger (the runtime, tracing-subscriber \
                     with its regex-based filter), so more of them are resident. RssAnon is \
                     the private part.",
                );
            }
        }
    }
}
