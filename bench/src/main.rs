//! The tableflip benchmark: upgrades measured side by side with the fork+exec floor and the
//! peers (Go tableflip, ecdysis, shellflip), growing listener counts, live load, and plain
//! tokio.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml              # full run
//! cargo run --release --manifest-path bench/Cargo.toml -- --quick   # CI smoke run
//! ```
//!
//! Prints markdown tables on stdout, progress on stderr, and writes JSON (`bench/results.json`
//! unless `--json PATH`). Every process it starts runs on loopback and is killed and reaped
//! (the bench is their child subreaper); every wait and every loop is bounded.

mod bins;
mod breakdown;
mod clients;
mod cycles;
mod load;
mod overhead;
mod probe;
mod procs;
mod report;
mod stats;
mod under_load;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cycles::{Floor, Hello, Record, Shellflip, Subject};
use crate::load::Protocol;
use crate::report::{CycleRow, LoadRow, Report};

/// Listener counts of the growth section.
const GROWTH: [usize; 4] = [1, 10, 100, 1000];

/// How much of everything a run does.
#[derive(Clone, Copy, Debug)]
struct Counts {
    cycles: usize,
    /// Upgrades cut into phases.
    breakdown: usize,
    gap: Duration,
    load: under_load::Plan,
    overhead: overhead::Plan,
    clients: clients::Plan,
}

const FULL: Counts = Counts {
    cycles: 60,
    breakdown: 30,
    gap: Duration::from_millis(10),
    load: under_load::Plan {
        conns: 64,
        rounds: 5,
        upgrades: 5,
        warmup: Duration::from_millis(500),
        gap: Duration::from_millis(300),
        tail: Duration::from_millis(500),
    },
    overhead: overhead::Plan {
        conns: 64,
        rounds: 16,
        round: Duration::from_millis(750),
    },
    clients: clients::Plan {
        turns: 10,
        upgrades: 20,
        wrk_conns: 32,
        gap: Duration::from_millis(50),
    },
};

const QUICK: Counts = Counts {
    cycles: 3,
    breakdown: 2,
    gap: Duration::from_millis(10),
    load: under_load::Plan {
        conns: 64,
        rounds: 1,
        upgrades: 2,
        warmup: Duration::from_millis(300),
        gap: Duration::from_millis(100),
        tail: Duration::from_millis(200),
    },
    overhead: overhead::Plan {
        conns: 16,
        rounds: 2,
        round: Duration::from_millis(250),
    },
    clients: clients::Plan {
        turns: 1,
        upgrades: 2,
        wrk_conns: 8,
        gap: Duration::from_millis(50),
    },
};

struct Args {
    quick: bool,
    /// `--hammer ADDR SECS`: only load a hello server (to profile it), then exit.
    hammer: Option<(std::net::SocketAddr, f64)>,
    json: PathBuf,
    release_examples: bool,
    /// Sections to run (`cycles`, `load`, `overhead`, `breakdown`, `clients`); all when
    /// empty.
    only: Vec<String>,
    /// `--candidate NAME=PATH`: more hello services cycled with the others (A/B runs).
    candidates: Vec<(String, PathBuf)>,
}

const USAGE: &str = "usage: tableflip-bench [--quick] [--json PATH] [--release-examples]
                       [--only LIST] [--hammer ADDR SECS] [--candidate NAME=PATH]...

  --quick              CI smoke run: every section with tiny counts; the examples are
                       taken in the dev profile (as `cargo test` built them), so the
                       figures mean nothing
  --json PATH          where to write the results (default: bench/results.json)
  --release-examples   with --quick: build and use the examples in release
  --only LIST          run only these sections: cycles, load, overhead, breakdown,
                       clients (comma-separated)
  --hammer ADDR SECS   only load the hello server at ADDR with 64 connections for SECS
                       seconds and print its throughput (to profile a server)
  --candidate NAME=PATH
                       also cycle the hello service at PATH (same contract as `hello`)
                       in the upgrade table and the breakdown, in turn with the others:
                       an A/B run of a change in one run (repeatable)

With TABLEFLIP_BENCH_SAMPLES=DIR, the load section also writes every request's latency and
every upgrade window there as CSV.";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        hammer: None,
        json: bins::product_dir().join("bench").join("results.json"),
        release_examples: false,
        only: Vec::new(),
        candidates: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--release-examples" => args.release_examples = true,
            "--only" => {
                let list = it.next().ok_or("--only needs a list")?;
                for s in list.split(',') {
                    if !["cycles", "load", "overhead", "breakdown", "clients"].contains(&s) {
                        return Err(format!("unknown section `{s}`"));
                    }
                    args.only.push(s.to_owned());
                }
            }
            "--json" => args.json = it.next().ok_or("--json needs a path")?.into(),
            "--candidate" => {
                let spec = it.next().ok_or("--candidate needs NAME=PATH")?;
                let (name, path) = spec.split_once('=').ok_or("--candidate needs NAME=PATH")?;
                args.candidates.push((name.to_owned(), path.into()));
            }
            "--hammer" => {
                let addr = it.next().and_then(|a| a.parse().ok());
                let secs = it.next().and_then(|s| s.parse().ok());
                match (addr, secs) {
                    (Some(a), Some(s)) => args.hammer = Some((a, s)),
                    _ => return Err("--hammer needs ADDR SECONDS".into()),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !args.quick {
        args.release_examples = true;
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tableflip-bench: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    let counts = if args.quick { QUICK } else { FULL };
    raise_fd_limit();
    if let Some((addr, secs)) = args.hammer {
        return hammer(addr, secs);
    }

    let spinner = ProgressBar::new_spinner().with_message(format!(
        "building the examples ({}) and the bench's helpers",
        if args.release_examples {
            "release"
        } else {
            "dev"
        }
    ));
    spinner.enable_steady_tick(Duration::from_millis(200));
    let bins = bins::build(args.release_examples);
    spinner.finish_and_clear();
    let bins = match bins {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tableflip-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::new(args.quick, bins.examples_profile, counts.load.conns);
    report.go_version = bins.go.as_ref().ok().map(|g| g.version.clone());
    // From here on the reaper collects every exit.
    procs::Reaper::get();

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tableflip-bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let run = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    if run("cycles") {
        cycle_sections(&bins, counts, &args.candidates, &mut report);
    }
    if run("load") {
        load_section(&rt, &bins, counts, &mut report);
    }
    if run("overhead") {
        overhead_section(&rt, &bins, counts, &mut report);
    }
    if run("breakdown") {
        let bar = bar(1, "breakdown");
        let mut subjects = vec![(report::TABLEFLIP_HELLO.to_owned(), bins.hello.as_path())];
        for (name, path) in &args.candidates {
            subjects.push((format!("candidate `{name}`"), path.as_path()));
        }
        report.breakdown = Some(breakdown::run(&subjects, counts.breakdown));
        bar.finish_and_clear();
        eprintln!("breakdown: done");
    }
    if run("clients") {
        clients_section(&bins, counts, &mut report);
    }
    procs::kill_all();
    drop(rt);

    report.finish();
    println!("{}", report.markdown());
    let mut failed = report.errors();
    let json = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
    match std::fs::write(&args.json, json + "\n") {
        Ok(()) => eprintln!("results written to {}", args.json.display()),
        Err(e) => {
            eprintln!("tableflip-bench: can't write {}: {e}", args.json.display());
            failed = true;
        }
    }
    if failed {
        eprintln!(
            "tableflip-bench: a section failed; the services' logs are kept in {}",
            procs::scratch().display()
        );
    } else {
        let _ = std::fs::remove_dir_all(procs::scratch());
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn hammer(addr: std::net::SocketAddr, secs: f64) -> ExitCode {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let base = std::time::Instant::now();
    let limits = load::Limits {
        stop: Default::default(),
        deadline: base + Duration::from_secs_f64(secs.clamp(0.0, 3600.0)),
        max_per_conn: u64::MAX,
    };
    let out = rt.block_on(load::run(addr, Protocol::Hello, 64, base, limits));
    let c = &out.counts;
    println!(
        "{} requests in {:.2} s: {:.0}/s; failed {}",
        c.ok,
        base.elapsed().as_secs_f64(),
        c.ok as f64 / base.elapsed().as_secs_f64(),
        c.failed()
    );
    ExitCode::SUCCESS
}

/// 1000 listeners, each also held by the successor during the handover, need more than the
/// usual 1024 descriptors: the soft limit goes up to the hard one (children inherit it).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn bar(len: usize, prefix: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let bar = ProgressBar::new(len as u64)
        .with_style(style)
        .with_prefix(prefix);
    if bar.is_hidden() {
        eprintln!("{prefix}: {len} steps");
    }
    bar
}

/// Sections 1 to 4: the upgrade cycle of `hello`, the floor, shellflip, and growing listener
/// counts, all cycled in turn in one loop.
fn cycle_sections(
    bins: &bins::Bins,
    counts: Counts,
    candidates: &[(String, PathBuf)],
    report: &mut Report,
) {
    let _sweep = procs::Sweep;
    let mut rows: Vec<CycleRow> = Vec::new();
    let mut subjects: Vec<(String, Box<dyn Subject>)> = Vec::new();
    // A subject that could not start, or is skipped, gets its row with the reason.
    let mut add = |row: CycleRow, subject: Result<Box<dyn Subject>, Record>| match subject {
        Ok(s) => {
            subjects.push((row.name.clone(), s));
            rows.push(row);
        }
        Err(record) => rows.push(CycleRow { record, ..row }),
    };
    let failed = |e: String| Record {
        error: Some(e),
        ..Record::default()
    };
    let skipped = |why: &String| Record {
        skipped: Some(why.clone()),
        ..Record::default()
    };
    let hello = |exe: &std::path::Path, tag: &str| {
        Hello::start(exe, tag, &[])
            .map(|s| Box::new(s) as Box<dyn Subject>)
            .map_err(failed)
    };
    add(
        CycleRow::new("upgrade", report::TABLEFLIP_HELLO),
        hello(&bins.hello, "hello"),
    );
    add(
        CycleRow::new("upgrade", report::GO_HELLO),
        match &bins.go {
            Ok(go) => hello(&go.hello, "go-hello"),
            Err(why) => Err(skipped(why)),
        },
    );
    add(
        CycleRow::new("upgrade", report::ECDYSIS_HELLO),
        hello(&bins.ecdysis_hello, "ecdysis-hello"),
    );
    add(
        CycleRow::new("upgrade", report::SHELLFLIP),
        Shellflip::start(&bins.shellflip_hello)
            .map(|s| Box::new(s) as Box<dyn Subject>)
            .map_err(failed),
    );
    add(
        CycleRow::new("upgrade", report::FLOOR),
        Ok(Box::new(Floor::new(&bins.floor))),
    );
    // The statically linked builds, or the reason there are none, for each of their rows.
    let static_hellos = [
        (report::TABLEFLIP_HELLO_STATIC, "hello-static", false),
        (report::TABLEFLIP_HELLO_NOPIE, "hello-static-nopie", true),
    ];
    for (row, tag, nopie) in static_hellos {
        add(
            CycleRow::new("upgrade", row),
            match &bins.static_builds {
                Ok(b) => hello(if nopie { &b.hello_nopie } else { &b.hello }, tag),
                Err(why) => Err(skipped(why)),
            },
        );
    }
    add(
        CycleRow::new("upgrade", report::FLOOR_STATIC),
        match &bins.static_builds {
            Ok(b) => Ok(Box::new(Floor::new(&b.floor))),
            Err(why) => Err(skipped(why)),
        },
    );
    for (i, (name, path)) in candidates.iter().enumerate() {
        add(
            CycleRow::new("upgrade", &format!("candidate `{name}`")),
            hello(path, &format!("candidate-{i}")),
        );
    }
    let fd_limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    for n in GROWTH {
        // The old process holds each listener three times while it starts its successor.
        let needed = 4 * n as u64 + 256;
        if fd_limit < needed {
            let skipped =
                format!("skipped: needs {needed} descriptors, RLIMIT_NOFILE is {fd_limit}");
            add(
                CycleRow::new("growth", &n.to_string()),
                Err(Record {
                    skipped: Some(skipped),
                    ..Record::default()
                }),
            );
            continue;
        }
        add(
            CycleRow::new("growth", &n.to_string()),
            Hello::start(
                &bins.many_listeners,
                &format!("listeners-{n}"),
                &[("LISTENERS", n.to_string())],
            )
            .map(|s| Box::new(s) as Box<dyn Subject>)
            .map_err(failed),
        );
    }
    let bar = bar(counts.cycles * subjects.len(), "cycles");
    // The growth services in a loop of their own: the aftermath of a 1000-listener upgrade
    // (its old process's exit, the kernel freeing thousands of sockets' references, the new
    // one's accept tasks) would otherwise fall on whichever subject comes next in the round,
    // always the same one.
    let growth_rows: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r.section == "growth")
        .map(|r| r.name.as_str())
        .collect();
    let (mut upgrades, mut growth): (Vec<_>, Vec<_>) = subjects
        .into_iter()
        .partition(|(name, _)| !growth_rows.contains(name.as_str()));
    let mut records = Vec::new();
    for group in [&mut upgrades, &mut growth] {
        records.extend(cycles::round_robin(
            group,
            counts.cycles,
            counts.gap,
            |name| {
                bar.set_message(name.to_owned());
                bar.inc(1);
            },
        ));
    }
    bar.finish_and_clear();
    // Rows that started have a record, in the same order.
    let mut records = records.into_iter();
    for row in &mut rows {
        if row.record.error.is_none() && row.record.skipped.is_none() {
            row.record = records.next().unwrap_or_default();
        }
    }
    eprintln!("cycles: done");
    report.cycles = rows;
}

/// Section 5: the `http` example and its peers under load, one request per connection and
/// keep-alive, every server in turn for a few upgrades at a time.
fn load_section(rt: &tokio::runtime::Runtime, bins: &bins::Bins, counts: Counts, r: &mut Report) {
    let _sweep = procs::Sweep;
    let mut servers: Vec<(&'static str, &std::path::Path)> =
        vec![(report::TABLEFLIP_HTTP, &bins.http)];
    match &bins.go {
        Ok(go) => servers.push((report::GO_HTTP, &go.http)),
        Err(why) => r.skipped.push((report::GO_HTTP, why.clone())),
    }
    servers.push((report::ECDYSIS_HTTP, &bins.ecdysis_http));
    let mut live: Vec<(&'static str, Protocol, Result<under_load::Live, String>)> = Vec::new();
    for protocol in [Protocol::HttpClose, Protocol::HttpKeepAlive] {
        for (i, (server, exe)) in servers.iter().enumerate() {
            let tag = format!("load-{}-{i}", load::mode_tag(protocol));
            live.push((server, protocol, under_load::Live::start(exe, &tag)));
        }
    }
    let plan = counts.load;
    let bar = bar(plan.rounds * plan.upgrades * live.len(), "load");
    for _ in 0..plan.rounds {
        for (server, protocol, l) in &mut live {
            let Ok(running) = l else { continue };
            bar.set_message(format!("{server} {}", load::mode_tag(*protocol)));
            if let Err(e) = running.turn(rt, *protocol, plan, || bar.inc(1)) {
                *l = Err(e);
            }
        }
    }
    bar.finish_and_clear();
    eprintln!("load: done");
    for (server, protocol, l) in live {
        r.load.push(LoadRow {
            server,
            protocol,
            run: l.map(|l| l.run),
        });
    }
}

/// Section 6: throughput and RSS of `hello` against its peers and the same server on plain
/// tokio.
fn overhead_section(
    rt: &tokio::runtime::Runtime,
    bins: &bins::Bins,
    counts: Counts,
    r: &mut Report,
) {
    let mut servers: Vec<(String, &std::path::Path)> =
        vec![(report::TABLEFLIP_HELLO.into(), &bins.hello)];
    match &bins.go {
        Ok(go) => servers.push((report::GO_HELLO.into(), &go.hello)),
        Err(why) => r.skipped.push((report::GO_HELLO, why.clone())),
    }
    servers.push((report::ECDYSIS_HELLO.into(), &bins.ecdysis_hello));
    servers.push((report::PLAIN_TOKIO.into(), &bins.plain_hello));
    let bar = bar(counts.overhead.rounds * servers.len(), "overhead");
    let res = overhead::run(rt, &servers, counts.overhead, || bar.inc(1));
    bar.finish_and_clear();
    eprintln!("overhead: done");
    r.overhead = Some(res);
    r.overhead_plan = counts.overhead;
}

/// Section 8: wrk and h2load across upgrades of the `http` example and of `http_naive`
/// (`axum::serve` with graceful shutdown), in turn.
fn clients_section(bins: &bins::Bins, counts: Counts, r: &mut Report) {
    let _sweep = procs::Sweep;
    r.clients_plan = counts.clients;
    if let Some(tool) = clients::missing_tool() {
        r.clients = Some(Err(format!(
            "skipped: {tool} is not installed (Debian packages wrk, nghttp2-client)"
        )));
        return;
    }
    let servers = [
        (
            report::TABLEFLIP_HTTP,
            "`tableflip::axum::serve`",
            bins.http.as_path(),
        ),
        (
            "tableflip `http_naive`",
            "`axum::serve(..).with_graceful_shutdown(tf.shutdown())`",
            bins.http_naive.as_path(),
        ),
    ];
    let plan = counts.clients;
    let bar = bar(plan.turns * plan.upgrades * servers.len(), "clients");
    let rows = clients::run(&servers, plan, |name| {
        bar.set_message(name.to_owned());
        bar.inc(1);
    });
    bar.finish_and_clear();
    eprintln!("clients: done");
    r.clients = Some(Ok(rows));
}
