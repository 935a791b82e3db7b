//! The results as JSON.

use serde_json::{Value, json};

use super::{ECDYSIS_HELLO, GO_HELLO, GO_HTTP, PLAIN_TOKIO, SHELLFLIP};
use super::{Report, counts_json, locked_version, mode_name};
use super::{cpu_model, kernel, nproc};
use crate::overhead::{Server, paired_ratio};
use crate::probe::PROBE_INTERVAL;
use crate::stats::{Summary, ratio};

impl Report {
    /// Everything, for tools.
    pub(crate) fn json(&self) -> Value {
        let cycles: Vec<Value> = self
            .cycles
            .iter()
            .map(|r| {
                let mut v = json!({
                    "section": r.section,
                    "subject": r.name,
                    "answers": r.ready().json(),
                    "gone": r.gone().json(),
                    "error": r.record.error,
                    "skipped": r.record.skipped,
                });
                if r.section == "upgrade" {
                    let (a, g) = self.floor_ratios(r);
                    v["p50_vs_floor"] = json!({ "answers": a, "gone": g });
                    let (a, g) = self.go_ratios(r);
                    v["p50_vs_go_tableflip"] = json!({ "answers": a, "gone": g });
                } else {
                    let (a, g) = self.growth_ratios(r);
                    v["p50_vs_one_listener"] = json!({ "answers": a, "gone": g });
                }
                match r.name.as_str() {
                    SHELLFLIP => {
                        v["version"] = json!(locked_version("shellflip"));
                        v["hands_over_listeners"] = json!(false);
                    }
                    ECDYSIS_HELLO => v["version"] = json!(locked_version("ecdysis")),
                    GO_HELLO => v["version"] = json!(self.go_version),
                    _ => {}
                }
                v
            })
            .collect();
        let load: Vec<Value> = self
            .load
            .iter()
            .map(|l| match &l.run {
                Err(e) => json!({ "server": l.server, "mode": mode_name(l.protocol), "error": e }),
                Ok(r) => {
                    let rps = Self::load_rps(r);
                    let go_rps = self
                        .load
                        .iter()
                        .find(|g| g.server == GO_HTTP && g.protocol == l.protocol)
                        .and_then(|g| g.run.as_ref().ok())
                        .map_or(f64::NAN, Self::load_rps);
                    json!({
                        "server": l.server,
                        "mode": mode_name(l.protocol),
                        "connections": self.conns,
                        "upgrades": r.cycles.len(),
                        "answers": Summary::of(r.cycles.iter().map(|c| c.ready.as_secs_f64() * 1e3)).json(),
                        "gone": Summary::of(r.cycles.iter().map(|c| c.gone.as_secs_f64() * 1e3)).json(),
                        "seconds": r.elapsed.as_secs_f64(),
                        "requests": counts_json(&r.counts),
                        "rps": rps,
                        "rps_vs_go_tableflip": ratio(rps, go_rps),
                        "first_errors": r.errors,
                        "steady_latency": r.steady().json(),
                        "upgrade_latency": r.during().json(),
                        "p99_during_vs_steady": ratio(r.during().p99, r.steady().p99),
                        "slowest": r.slowest.iter().map(|(l, rel)| json!({
                            "latency_ms": l, "start_vs_nearest_signal_ms": rel,
                        })).collect::<Vec<_>>(),
                    })
                }
            })
            .collect();
        let overhead = match &self.overhead {
            None => Value::Null,
            Some(Err(e)) => json!({ "error": e }),
            Some(Ok(servers)) => {
                let plain = self.server(PLAIN_TOKIO);
                let go = self.server(GO_HELLO);
                let vs = |s: &Server, o: Option<&Server>| o.map(|o| paired_ratio(s, o));
                let diff =
                    |s: &Server, f: fn(&Server) -> u64| plain.map(|p| f(s) as i64 - f(p) as i64);
                let all: Vec<Value> = servers
                    .iter()
                    .map(|s| {
                        json!({
                            "server": s.name,
                            "rps_rounds": s.rps, "rps_median": s.median_rps(),
                            "rps_vs_plain_tokio": vs(s, plain),
                            "rps_vs_go_tableflip": vs(s, go),
                            "requests": counts_json(&s.counts),
                            "idle_rss_kib": s.idle_rss_kib, "peak_rss_kib": s.peak_rss_kib,
                            "anon_rss_kib": s.anon_rss_kib,
                            "peak_rss_over_plain_tokio_kib": diff(s, |s| s.peak_rss_kib),
                            "anon_rss_over_plain_tokio_kib": diff(s, |s| s.anon_rss_kib),
                        })
                    })
                    .collect();
                json!({
                    "rounds": self.overhead_plan.rounds,
                    "round_seconds": self.overhead_plan.round.as_secs_f64(),
                    "connections": self.overhead_plan.conns,
                    "servers": all,
                })
            }
        };
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|t| json!({ "target": t.what, "figure": t.figure, "met": t.met }))
            .collect();
        json!({
            "command": self.command(),
            "quick": self.quick,
            "examples_profile": self.examples_profile,
            "revision": self.revision,
            "nice": super::niceness(),
            "machine": {
                "nproc": nproc(), "cpu": cpu_model(), "kernel": kernel(),
                "loadavg_start": self.load_start, "loadavg_end": self.load_end,
            },
            "peers": {
                "go": self.go_version, "go_tableflip": "1.2.1+git20200514 (Debian)",
                "ecdysis": locked_version("ecdysis"), "shellflip": locked_version("shellflip"),
            },
            "skipped": self.skipped.iter().map(|(w, why)| json!({ "subject": w, "why": why })).collect::<Vec<_>>(),
            "probe_interval_us": PROBE_INTERVAL.as_micros() as u64,
            "cycles": cycles,
            "load": load,
            "overhead": overhead,
            "targets": targets,
            "breakdown": match &self.breakdown {
                None => Value::Null,
                Some(subjects) => json!(subjects.iter().map(|(name, r)| match r {
                    Err(e) => json!({ "subject": name, "error": e }),
                    Ok(phases) => json!({ "subject": name, "phases": phases.iter().map(|p| json!({
                        "phase": p.name, "covers": p.covers, "ms": p.ms.json(),
                    })).collect::<Vec<_>>() }),
                }).collect::<Vec<_>>()),
            },
            "real_clients": crate::clients::json(&self.clients, self.clients_plan),
        })
    }
}
