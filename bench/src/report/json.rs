//! The results as JSON.

use serde_json::{Value, json};

use super::{Report, counts_json, mode_name, shellflip_version};
use super::{cpu_model, kernel, nproc};
use crate::overhead::Server;
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
                } else {
                    let (a, g) = self.growth_ratios(r);
                    v["p50_vs_one_listener"] = json!({ "answers": a, "gone": g });
                }
                if r.name == "shellflip" {
                    v["version"] = json!(shellflip_version());
                    v["hands_over_listeners"] = json!(false);
                }
                v
            })
            .collect();
        let load: Vec<Value> = self
            .load
            .iter()
            .map(|l| match &l.run {
                Err(e) => json!({ "server": l.server, "mode": mode_name(l.protocol), "error": e }),
                Ok(r) => json!({
                    "server": l.server,
                    "mode": mode_name(l.protocol),
                    "connections": self.conns,
                    "upgrades": r.cycles.len(),
                    "answers": Summary::of(r.cycles.iter().map(|c| c.ready.as_secs_f64() * 1e3)).json(),
                    "gone": Summary::of(r.cycles.iter().map(|c| c.gone.as_secs_f64() * 1e3)).json(),
                    "seconds": r.elapsed.as_secs_f64(),
                    "requests": counts_json(&r.outcome.counts),
                    "first_errors": r.outcome.errors,
                    "steady_latency": r.steady.json(),
                    "upgrade_latency": r.during.json(),
                    "p99_during_vs_steady": ratio(r.during.p99, r.steady.p99),
                    "slowest": r.slowest.iter().map(|(l, rel)| json!({
                        "latency_ms": l, "start_vs_nearest_signal_ms": rel,
                    })).collect::<Vec<_>>(),
                }),
            })
            .collect();
        let overhead = match &self.overhead {
            None => Value::Null,
            Some(Err(e)) => json!({ "error": e }),
            Some(Ok((tf, plain))) => {
                let s = |s: &Server| {
                    json!({
                        "rps_rounds": s.rps, "rps_median": s.median_rps(),
                        "requests": counts_json(&s.counts),
                        "idle_rss_kib": s.idle_rss_kib, "peak_rss_kib": s.peak_rss_kib,
                        "anon_rss_kib": s.anon_rss_kib,
                    })
                };
                json!({
                    "rounds": self.overhead_plan.rounds,
                    "round_seconds": self.overhead_plan.round.as_secs_f64(),
                    "connections": self.overhead_plan.conns,
                    "tableflip": s(tf),
                    "plain_tokio": s(plain),
                    "throughput_ratio": crate::overhead::paired_ratio(tf, plain),
                    "peak_rss_overhead_kib": tf.peak_rss_kib as i64 - plain.peak_rss_kib as i64,
                    "anon_rss_overhead_kib": tf.anon_rss_kib as i64 - plain.anon_rss_kib as i64,
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
            "probe_interval_us": PROBE_INTERVAL.as_micros() as u64,
            "cycles": cycles,
            "load": load,
            "overhead": overhead,
            "targets": targets,
        })
    }
}
