//! Where the time goes: upgrades of the `hello` example cut into phases, from the timestamps
//! of the runtime's own log (`RUST_LOG=debug`, microseconds of the realtime clock) and the
//! bench's clocks (the signal, the first answer from the new pid, the old pid reaped).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::probe;
use crate::procs::free_addr;
use crate::procs::{self, Reaper, WAIT};
use crate::stats::Summary;

/// One phase: a name, what it covers, and its durations over the upgrades.
#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) covers: &'static str,
    pub(crate) ms: Summary,
}

/// The phases, in order; the last two are the totals.
const PHASES: [(&str, &str); 9] = [
    (
        "signal → upgrade starts",
        "signal delivery, tokio's signal driver, the lifecycle task",
    ),
    (
        "spawn",
        "pipes, the fork of the shim, its fork and exec of the successor (the shim reports once exec succeeded)",
    ),
    (
        "successor start",
        "dynamic loader, std init, environment, names read from fd 4, inherited fds checked, \
         tokio runtime built (to the successor's first log line)",
    ),
    (
        "successor claim + ready",
        "listeners claimed, signal handlers, pid file, ready byte on fd 3",
    ),
    (
        "old sees ready",
        "the old process reads the ready byte and hands over",
    ),
    (
        "drain",
        "old process: handover → drained (in-flight connections, on_shutdown hooks)",
    ),
    (
        "exit + reap",
        "old process: runtime shutdown, exit, reaped by the bench",
    ),
    (
        "total: signal → new pid answers",
        "as in the cycle table (probe every 200 µs)",
    ),
    ("total: signal → old pid gone", "as in the cycle table"),
];

/// Each subject's phases (or why it could not be measured), by name.
pub(crate) type Subjects = Vec<(String, Result<Vec<Phase>, String>)>;

/// One service whose upgrades are cut into phases.
struct Subject {
    addr: std::net::SocketAddr,
    pid: i32,
    log: std::path::PathBuf,
    /// Log lines already read.
    seen: usize,
    samples: Vec<Vec<f64>>,
}

impl Subject {
    fn start(exe: &Path, tag: &str) -> Result<Subject, String> {
        let addr = free_addr()?;
        let log = procs::scratch().join(format!("breakdown-{tag}.log"));
        let mut cmd = procs::service_command(
            exe,
            &[
                ("ADDR", addr.to_string()),
                ("RUST_LOG", "debug".to_string()),
            ],
            &log,
        );
        let (pid, _) = procs::spawn(&mut cmd).map_err(|e| format!("can't start: {e}"))?;
        probe::poll(WAIT, || probe::hello(addr).ok().filter(|p| *p == pid))
            .ok_or_else(|| format!("hello did not answer; log:\n{}", procs::tail(&log, 20)))?;
        Ok(Subject {
            addr,
            pid,
            log,
            seen: 0,
            samples: vec![Vec::new(); PHASES.len()],
        })
    }

    /// One upgrade, cut into phases.
    fn cycle(&mut self, us: impl Fn(Instant) -> u64) -> Result<(), String> {
        let (addr, log) = (self.addr, &self.log);
        let old = self.pid;
        let t0 = Instant::now();
        procs::signal(old, Signal::SIGHUP)?;
        let new = probe::poll(WAIT, || probe::hello(addr).ok().filter(|p| *p != old))
            .ok_or_else(|| format!("no new pid answered; log:\n{}", procs::tail(log, 20)))?;
        let answered = Instant::now();
        let exit = Reaper::get()
            .wait(old, WAIT)
            .ok_or_else(|| format!("old pid {old} did not exit"))?;
        self.pid = new;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().skip(self.seen).collect();
        self.seen += lines.len();
        let at = |message: &str, field: &str, p: i32| -> Option<u64> {
            let field = format!("{field}={p}");
            lines
                .iter()
                .find(|l| l.contains(message) && l.split_whitespace().any(|w| w == field))
                .and_then(|l| parse_timestamp(l.split_whitespace().next()?))
        };
        let events = [
            Some(us(t0)),
            // The upgrade's span prints as `upgrade{pid=OLD ...}:`.
            lines
                .iter()
                .find(|l| {
                    l.contains("starting the new process")
                        && (l.contains(&format!("upgrade{{pid={old}}}"))
                            || l.contains(&format!("upgrade{{pid={old} ")))
                })
                .and_then(|l| parse_timestamp(l.split_whitespace().next()?)),
            at("started new process", "child_pid", new),
            at("upgrader created", "pid", new),
            at(": ready", "pid", new),
            at("new process is ready", "child_pid", new),
            at("drained; exiting", "pid", old),
            Some(us(exit.at)),
        ];
        for (i, pair) in events.windows(2).enumerate() {
            if let [Some(a), Some(b)] = pair {
                self.samples[i].push(b.saturating_sub(*a) as f64 / 1e3);
            }
        }
        self.samples[7].push((answered - t0).as_secs_f64() * 1e3);
        self.samples[8].push((exit.at - t0).as_secs_f64() * 1e3);
        Ok(())
    }

    fn phases(self) -> Vec<Phase> {
        PHASES
            .iter()
            .zip(self.samples)
            .map(|((name, covers), v)| Phase {
                name,
                covers,
                ms: Summary::of(v),
            })
            .collect()
    }
}

/// Runs `cycles` upgrades of every hello service of `subjects` (name, executable), in turn,
/// with a debug log, and cuts each into [`PHASES`].
pub(crate) fn run(subjects: &[(String, &Path)], cycles: usize) -> Subjects {
    let _sweep = procs::Sweep;
    // Instants (the reaper's stamps) to the realtime clock of the log.
    let (sys0, inst0) = (SystemTime::now(), Instant::now());
    let us = |t: Instant| micros(sys0 + (t - inst0));
    let mut live: Vec<Result<Subject, String>> = subjects
        .iter()
        .enumerate()
        .map(|(i, (_, exe))| Subject::start(exe, &i.to_string()))
        .collect();
    for _ in 0..cycles {
        for s in &mut live {
            if let Ok(subject) = s {
                if let Err(e) = subject.cycle(us) {
                    *s = Err(e);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    subjects
        .iter()
        .zip(live)
        .map(|((name, _), s)| (name.clone(), s.map(Subject::phases)))
        .collect()
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `2026-12-03T08:29:29.207591Z` (tracing's UTC timestamps) in µs since the epoch.
fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    // Microseconds from the fraction, whatever its number of digits.
    let digits: String = frac.chars().take(6).collect();
    let micros = digits.parse::<i64>().ok()? * 10_i64.pow(6 - digits.len() as u32);
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    #[test]
    fn timestamps_are_microseconds_since_the_epoch() {
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01.000002Z"),
            Some(1_000_002)
        );
        assert_eq!(
            parse_timestamp("2026-12-03T08:29:29.207591Z"),
            Some(1_796_286_569_207_591)
        );
        assert_eq!(
            parse_timestamp("2000-02-29T00:00:00.5Z"),
            Some(951_782_400_500_000)
        );
        assert_eq!(parse_timestamp("garbage"), None);
    }
}
