//! The results: markdown tables for people, JSON for tools, and the targets of issue 13.

mod json;

use serde_json::{Value, json};

use crate::cycles::Record;
use crate::load::{Counts, Protocol};
use crate::overhead::{self, Server};
use crate::probe::PROBE_INTERVAL;
use crate::stats::{Summary, ratio};
use crate::under_load::Run;

/// Subjects, as the tables name them.
pub(crate) const TABLEFLIP_HELLO: &str = "tableflip `hello`";
pub(crate) const GO_HELLO: &str = "Go tableflip `hello`";
pub(crate) const ECDYSIS_HELLO: &str = "ecdysis `hello`";
pub(crate) const SHELLFLIP: &str = "shellflip";
pub(crate) const FLOOR: &str = "floor";
pub(crate) const TABLEFLIP_HELLO_STATIC: &str = "tableflip `hello`, statically linked";
pub(crate) const TABLEFLIP_HELLO_NOPIE: &str = "tableflip `hello`, statically linked, not PIE";
pub(crate) const FLOOR_STATIC: &str = "floor, statically linked";
pub(crate) const TABLEFLIP_HTTP: &str = "tableflip `http`";
pub(crate) const GO_HTTP: &str = "Go tableflip `http`";
pub(crate) const ECDYSIS_HTTP: &str = "ecdysis `http`";
pub(crate) const PLAIN_TOKIO: &str = "plain tokio";

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
    pub(crate) load_plan: crate::under_load::Plan,
    pub(crate) overhead: Option<Result<Vec<Server>, String>>,
    pub(crate) overhead_plan: overhead::Plan,
    /// Subjects of the load and overhead sections that could not run here, and why.
    pub(crate) skipped: Vec<(&'static str, String)>,
    /// `go version`, when the Go peers were built.
    pub(crate) go_version: Option<String>,
    /// Per subject (`hello`, then the candidates): its phases.
    pub(crate) breakdown: Option<crate::breakdown::Subjects>,
    pub(crate) clients: Option<Result<Vec<crate::clients::Row>, String>>,
    pub(crate) clients_plan: crate::clients::Plan,
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

/// The version of crate `name` in the bench's lockfile.
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .unwrap_or_default();
    let mut lines = lock.lines();
    let wanted = format!("name = \"{name}\"");
    while let Some(l) = lines.next() {
        if l == wanted {
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

/// A target of issue 13 and how this run fared.
struct Target {
    what: &'static str,
    figure: String,
    met: Option<bool>,
}

impl Report {
    pub(crate) fn new(quick: bool, examples_profile: &'static str, conns: usize) -> Report {
        let plan = if quick { crate::QUICK } else { crate::FULL };
        Report {
            quick,
            examples_profile,
            conns,
            load_start: loadavg(),
            load_end: String::new(),
            revision: revision(),
            cycles: Vec::new(),
            load: Vec::new(),
            load_plan: plan.load,
            overhead: None,
            overhead_plan: plan.overhead,
            skipped: Vec::new(),
            go_version: None,
            breakdown: None,
            clients: None,
            clients_plan: plan.clients,
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
            || self
                .breakdown
                .as_ref()
                .is_some_and(|b| b.iter().any(|(_, r)| r.is_err()))
            || self.clients.as_ref().is_some_and(|c| {
                c.as_ref().map_or_else(
                    |e| !e.starts_with("skipped"),
                    |rows| rows.iter().any(|r| r.tally.is_err()),
                )
            })
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

    /// p50 ratios (answers, gone) of `row` to the upgrade subject `to`.
    fn ratios_to(&self, row: &CycleRow, section: &str, to: &str) -> (f64, f64) {
        match self.row(section, to) {
            Some(f) if f.record.error.is_none() && f.record.skipped.is_none() => (
                ratio(row.ready().p50, f.ready().p50),
                ratio(row.gone().p50, f.gone().p50),
            ),
            _ => (f64::NAN, f64::NAN),
        }
    }

    pub(crate) fn floor_ratios(&self, row: &CycleRow) -> (f64, f64) {
        self.ratios_to(row, "upgrade", FLOOR)
    }

    pub(crate) fn go_ratios(&self, row: &CycleRow) -> (f64, f64) {
        self.ratios_to(row, "upgrade", GO_HELLO)
    }

    pub(crate) fn growth_ratios(&self, row: &CycleRow) -> (f64, f64) {
        self.ratios_to(row, "growth", "1")
    }

    /// The load run of `server` in `protocol`, if it ran.
    fn load_run(&self, server: &str, protocol: Protocol) -> Option<&Run> {
        self.load
            .iter()
            .find(|l| l.server == server && l.protocol == protocol)
            .and_then(|l| l.run.as_ref().ok())
    }

    /// Requests per second of a load run.
    pub(crate) fn load_rps(r: &Run) -> f64 {
        r.counts.ok as f64 / r.elapsed.as_secs_f64()
    }

    /// The overhead figures of `name`, if that section ran.
    pub(crate) fn server(&self, name: &str) -> Option<&Server> {
        match &self.overhead {
            Some(Ok(servers)) => servers.iter().find(|s| s.name == name),
            _ => None,
        }
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        if let Some(Ok(rows)) = &self.clients {
            let figure = rows
                .iter()
                .map(|r| match &r.tally {
                    Ok(tally) => format!(
                        "{}: {} lost in {} upgrades",
                        r.server,
                        tally.lost(),
                        tally.upgrades
                    ),
                    Err(_) => format!("{}: error", r.server),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let ours = rows.iter().find(|r| r.server == TABLEFLIP_HTTP);
            t.push(Target {
                what: "wrk and h2load across upgrades: 0 lost (tableflip `http`)",
                figure,
                met: ours
                    .and_then(|r| r.tally.as_ref().ok())
                    .map(|tally| tally.lost() == 0),
            });
        }
        let failed: Vec<String> = self
            .load
            .iter()
            .filter_map(|l| {
                let r = l.run.as_ref().ok()?;
                Some(format!(
                    "{} {} {}",
                    l.server,
                    mode_name(l.protocol),
                    r.counts.failed()
                ))
            })
            .collect();
        let tf_failed: Option<u64> = self
            .load
            .iter()
            .filter(|l| l.server == TABLEFLIP_HTTP)
            .map(|l| l.run.as_ref().ok().map(|r| r.counts.failed()))
            .sum();
        t.push(Target {
            what: "failed requests under load: 0 (tableflip)",
            figure: failed.join(", "),
            met: tf_failed.map(|n| n == 0),
        });
        let builds = [
            (TABLEFLIP_HELLO, "as built by `cargo build --release`"),
            (TABLEFLIP_HELLO_STATIC, "statically linked"),
            (TABLEFLIP_HELLO_NOPIE, "statically linked, not PIE"),
        ];
        for (name, build) in builds {
            let Some(up) = self
                .row("upgrade", name)
                .filter(|r| r.record.error.is_none())
            else {
                continue;
            };
            if up.record.skipped.is_some() {
                continue;
            }
            let (r, g) = self.go_ratios(up);
            t.push(Target {
                what: "upgrade cycle p50 ≤ 0.5× Go tableflip",
                figure: format!("{build}: answers {}, gone {}", x(r), x(g)),
                met: (r.is_finite() && g.is_finite()).then_some(r <= 0.5 && g <= 0.5),
            });
            let (r, g) = self.floor_ratios(up);
            t.push(Target {
                what: "upgrade cycle p50 ≤ 1.5× the floor",
                figure: format!("{build}: answers {}, gone {}", x(r), x(g)),
                met: (r.is_finite() && g.is_finite()).then_some(r <= 1.5 && g <= 1.5),
            });
        }
        if let Some(big) = self.row("growth", "1000") {
            let (r, g) = self.growth_ratios(big);
            t.push(Target {
                what: "1000 listeners ≤ 2× one listener",
                figure: format!("answers {}, gone {}", x(r), x(g)),
                met: (r.is_finite() && g.is_finite()).then_some(r <= 2.0 && g <= 2.0),
            });
        }
        let p99s: Vec<(String, f64)> = [Protocol::HttpClose, Protocol::HttpKeepAlive]
            .into_iter()
            .filter_map(|p| {
                let r = self.load_run(TABLEFLIP_HTTP, p)?;
                Some((
                    mode_name(p).to_owned(),
                    ratio(r.during().p99, r.steady().p99),
                ))
            })
            .collect();
        if !p99s.is_empty() {
            t.push(Target {
                what: "p99 latency during upgrades ≤ 2× steady (tableflip `http`)",
                figure: p99s
                    .iter()
                    .map(|(name, v)| format!("{name} {}", x(*v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                met: Some(p99s.iter().all(|(_, v)| *v <= 2.0)),
            });
        }
        if let (Some(tf), Some(plain)) = (self.server(TABLEFLIP_HELLO), self.server(PLAIN_TOKIO)) {
            let r = overhead::paired_ratio(tf, plain);
            t.push(Target {
                what: "throughput ≥ 0.99× the same server on plain tokio",
                figure: format!("{r:.3}"),
                met: r.is_finite().then_some(r >= 0.99),
            });
            let d = tf.peak_rss_kib as i64 - plain.peak_rss_kib as i64;
            t.push(Target {
                what: "RSS over bare tokio ≤ 256 KiB (peak, VmHWM)",
                figure: format!(
                    "{d:+} KiB (private RssAnon {:+} KiB)",
                    tf.anon_rss_kib as i64 - plain.anon_rss_kib as i64
                ),
                met: Some(d <= 256),
            });
        }
        let retried: Vec<String> = self
            .load
            .iter()
            .filter(|l| l.protocol == Protocol::HttpKeepAlive)
            .filter_map(|l| {
                let r = l.run.as_ref().ok()?;
                Some(format!("{} {}", l.server, r.counts.retried))
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
            "Command: `{}{}`; product revision {}.  ",
            if nice != 0 {
                format!("nice -n {nice} ")
            } else {
                String::new()
            },
            self.command(),
            self.revision
        ));
        line(&format!(
            "Peers: Go tableflip 1.2.1+git20200514 (Debian; {}), ecdysis {}, shellflip {}.",
            self.go_version.as_deref().unwrap_or("no Go here"),
            locked_version("ecdysis"),
            locked_version("shellflip")
        ));
        if self.quick {
            line("");
            line(&format!(
                "**Quick run** (CI smoke test): tiny counts, examples in the {} profile; \
                 the figures mean nothing.",
                self.examples_profile
            ));
        }
        for (what, why) in &self.skipped {
            line("");
            line(&format!("{what}: {why}"));
        }
        self.md_cycles(&mut line);
        self.md_growth(&mut line);
        self.md_load(&mut line);
        self.md_overhead(&mut line);
        self.md_breakdown(&mut line);
        for l in crate::clients::markdown(&self.clients, self.clients_plan) {
            line(&l);
        }
        line("");
        line("### Targets (issue 13)");
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
            "### 1–3. Upgrade cycle: tableflip, its peers and the floor ({rounds} rounds, all \
             subjects cycled in turn)"
        ));
        line("");
        line(
            "| subject | restart | n | signal → new pid answers, ms (p50 / p99 / max) | \
             signal → old pid gone, ms (p50 / p99 / max) | p50 ÷ Go tableflip (answers, gone) \
             | p50 ÷ floor (answers, gone) |",
        );
        line("|---|---|---|---|---|---|---|");
        for row in self.cycles.iter().filter(|r| r.section == "upgrade") {
            let how = restart_how(&row.name);
            let name = match row.name.as_str() {
                SHELLFLIP => format!("shellflip {}", locked_version("shellflip")),
                ECDYSIS_HELLO => format!("ecdysis {} `hello`", locked_version("ecdysis")),
                other => other.to_owned(),
            };
            if let Some(why) = row.record.skipped.as_ref().or(row.record.error.as_ref()) {
                line(&format!(
                    "| {name} | {how} | - | {} | | | |",
                    first_line(why)
                ));
                continue;
            }
            let (ga, gg) = self.go_ratios(row);
            let (fa, fg) = self.floor_ratios(row);
            line(&format!(
                "| {name} | {how} | {} | {} | {} | {}, {} | {}, {} |",
                row.record.cycles.len(),
                row.ready().cell(),
                row.gone().cell(),
                x(ga),
                x(gg),
                x(fa),
                x(fg)
            ));
        }
        line("");
        line(&format!(
            "\"Answers\": a new pid in a fresh connection's greeting (probed every {} µs); \
             \"gone\": the old process exited and was reaped by the bench (its subreaper).",
            PROBE_INTERVAL.as_micros()
        ));
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
        let plan = self.load_plan;
        line("");
        line(&format!(
            "### 5. Under load: HTTP servers, {} connections kept busy through upgrades \
             ({} turns of {} upgrades per server and mode, in turn)",
            self.conns, plan.rounds, plan.upgrades
        ));
        line("");
        line(
            "| server | mode | upgrades (answers / gone p50, ms) | requests done | req/s | \
             req/s ÷ Go tableflip | failed | retried | steady latency, ms (p50 / p99 / max) | \
             during upgrades, ms (p50 / p99 / max) | p99 during ÷ steady |",
        );
        line("|---|---|---|---|---|---|---|---|---|---|---|");
        for l in &self.load {
            let p = &l.protocol;
            match &l.run {
                Err(e) => line(&format!(
                    "| {} | {} | error: {} | | | | | | | | |",
                    l.server,
                    mode_name(*p),
                    first_line(e)
                )),
                Ok(r) => {
                    let ready = Summary::of(r.cycles.iter().map(|c| c.ready.as_secs_f64() * 1e3));
                    let gone = Summary::of(r.cycles.iter().map(|c| c.gone.as_secs_f64() * 1e3));
                    let c = &r.counts;
                    let vs_go = self
                        .load_run(GO_HTTP, *p)
                        .map_or(f64::NAN, |g| ratio(Self::load_rps(r), Self::load_rps(g)));
                    line(&format!(
                        "| {} | {} | {} ({} / {}) | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                        l.server,
                        mode_name(*p),
                        r.cycles.len(),
                        crate::stats::ms(ready.p50),
                        crate::stats::ms(gone.p50),
                        c.ok,
                        Self::load_rps(r),
                        x(vs_go),
                        failed_cell(c),
                        if *p == Protocol::HttpKeepAlive {
                            c.retried.to_string()
                        } else {
                            "-".into()
                        },
                        r.steady().cell(),
                        r.during().cell(),
                        x(ratio(r.during().p99, r.steady().p99)),
                    ));
                }
            }
        }
        line("");
        line(
            "A request is \"during upgrades\" if it overlaps a window from the signal to the \
             old process gone. \"Retried\": on a reused keep-alive connection, the server \
             closed before any byte of the answer; the client retries once on a new \
             connection (as hyper's does) and that retry counts as any request. The Go peer \
             drains with net/http's `Shutdown`, the ecdysis one with `axum::serve`'s graceful \
             shutdown: both close idle keep-alive connections at once.",
        );
    }

    fn md_overhead(&self, line: &mut impl FnMut(&str)) {
        let plan = self.overhead_plan;
        line("");
        line(&format!(
            "### 6. Overhead: the hello server on tableflip, its peers and plain tokio \
             ({} rounds of {:?} each, order rotating, {} connections)",
            plan.rounds, plan.round, plan.conns
        ));
        line("");
        let servers = match &self.overhead {
            None => return line("not run"),
            Some(Err(e)) => return line(&format!("error: {}", first_line(e))),
            Some(Ok(servers)) => servers,
        };
        line(
            "| server | req/s (median; min–max) | req/s ÷ plain tokio | req/s ÷ Go tableflip | \
             failed | RSS idle (KiB) | peak RSS, VmHWM (KiB) | VmHWM − plain tokio | \
             private RSS after, RssAnon (KiB) | RssAnon − plain tokio |",
        );
        line("|---|---|---|---|---|---|---|---|---|---|");
        let plain = self.server(PLAIN_TOKIO);
        let go = self.server(GO_HELLO);
        for s in servers {
            let min = s.rps.iter().copied().fold(f64::INFINITY, f64::min);
            let max = s.rps.iter().copied().fold(0.0, f64::max);
            let vs = |o: Option<&Server>| o.map_or(f64::NAN, |o| overhead::paired_ratio(s, o));
            let diff = |f: fn(&Server) -> u64| {
                plain.map_or("-".into(), |p| format!("{:+}", f(s) as i64 - f(p) as i64))
            };
            line(&format!(
                "| {} | {:.0} ({min:.0}–{max:.0}) | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.median_rps(),
                vs(plain),
                vs(go),
                failed_cell(&s.counts),
                s.idle_rss_kib,
                s.peak_rss_kib,
                diff(|s| s.peak_rss_kib),
                s.anon_rss_kib,
                diff(|s| s.anon_rss_kib),
            ));
        }
        line("");
        line(
            "Ratios are medians of per-round ratios (the servers take turns within a round). \
             VmHWM counts the program's code pages too (shared through the page cache); \
             RssAnon is the private part.",
        );
    }
}

impl Report {
    fn md_breakdown(&self, line: &mut impl FnMut(&str)) {
        line("");
        line(
            "### 7. Where the time goes: upgrades of `hello` cut into phases \
             (the runtime's `RUST_LOG=debug` timestamps and the bench's clocks)",
        );
        line("");
        let Some(subjects) = &self.breakdown else {
            return line("not run");
        };
        let mut head = String::from("| phase | covers | n |");
        let mut rule = String::from("|---|---|---|");
        for (name, _) in subjects {
            head += &format!(" {name}: ms (p50 / p99 / max) |");
            rule += "---|";
        }
        line(&head);
        line(&rule);
        let Some(Ok(first)) = subjects.first().map(|(_, r)| r) else {
            let e = subjects.first().and_then(|(_, r)| r.as_ref().err());
            return line(&format!("error: {}", first_line(e.map_or("", |e| e))));
        };
        for (i, p) in first.iter().enumerate() {
            let mut row = format!("| {} | {} | {} |", p.name, p.covers, p.ms.n);
            for (_, r) in subjects {
                match r {
                    Ok(phases) => row += &format!(" {} |", phases[i].ms.cell()),
                    Err(e) => row += &format!(" error: {} |", first_line(e)),
                }
            }
            line(&row);
        }
        line("");
        line(
            "Phases come from separate upgrades' medians, so they need not add up to the \
             totals exactly; the debug log itself costs a little.",
        );
    }
}

/// How a subject of the cycle section restarts.
fn restart_how(name: &str) -> &'static str {
    match name {
        FLOOR => {
            "fork+exec of a program that writes 1 byte to an inherited pipe \
             (spawn → byte read, → reaped)"
        }
        SHELLFLIP => {
            "SIGUSR1, its `restarter` example's pattern; **does not hand over listeners**: \
             the new process binds a new port"
        }
        FLOOR_STATIC => {
            "the floor's program statically linked and not position-independent \
             (`-C target-feature=+crt-static -C relocation-model=static`), as Go links"
        }
        TABLEFLIP_HELLO_NOPIE => {
            "SIGHUP; the listener is handed over; built with `RUSTFLAGS=\"-C \
             target-feature=+crt-static -C relocation-model=static\"`, as Go links (no \
             address randomisation of the program's code)"
        }
        TABLEFLIP_HELLO_STATIC => {
            "SIGHUP; the listener is handed over; built with \
             `RUSTFLAGS=\"-C target-feature=+crt-static\"` (the README's fast-upgrade build)"
        }
        GO_HELLO => "SIGHUP, `Upgrade()`; the listener is handed over",
        ECDYSIS_HELLO => "SIGHUP, its `tokio_echo` example's pattern; the listener is handed over",
        _ => "SIGHUP; the listener is handed over",
    }
}
