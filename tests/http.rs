//! HTTP services across upgrades, driven by clients nobody here wrote: `wrk` (HTTP/1.1
//! keep-alive), `h2load` (HTTP/2, h2c and TLS) and a hyper client that counts both failed
//! requests and requests it had to retry on a fresh connection. The `http` and `https`
//! examples (built on `tableflip::axum::serve` and `tableflip::http::Server`) must lose
//! nothing: 0 failed, 0 retried, 0 socket errors. The naive
//! `axum::serve(..).with_graceful_shutdown(..)` (`examples/http_naive.rs`) runs the same
//! load beside them, to show what the feature is for.

mod support;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// Load tests share the machine's two cores and the subreaper's view of orphans.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Upgrades per run for the `http` and `https` examples.
const UPGRADES: usize = 50;

/// What every client saw across one run of upgrades.
struct Seen {
    upgrades: usize,
    /// Signal to the successor's ready, and to the old process reaped (mean).
    ready: Duration,
    gone: Duration,
    wrk: WrkReport,
    h2load: H2loadReport,
    hyper: HyperReport,
}

impl Seen {
    fn line(&self, name: &str) -> String {
        let w = &self.wrk;
        let h = &self.h2load;
        let y = &self.hyper;
        format!(
            "| {name} | {} ({:.0?} to ready, {:.0?} to gone) | wrk: {} requests, socket errors {:?} (connect, read, write, timeout), non-2xx {} | h2load: {} runs, {} requests, {} succeeded, {} failed, {} errored, {} timeout | hyper: {} ok, {} retried, {} failed |",
            self.upgrades,
            self.ready / self.upgrades as u32,
            self.gone / self.upgrades as u32,
            w.requests,
            w.socket_errors,
            w.non_2xx,
            h.runs,
            h.total,
            h.succeeded,
            h.failed,
            h.errored,
            h.timeout,
            y.ok,
            y.retried,
            y.failed,
        )
    }
}

/// Starts `example`, puts wrk, h2load and the hyper clients on it, upgrades it `upgrades`
/// times (each once the previous generation is gone, as an upgrade needs), then stops it.
fn upgrades_under_load(example_name: &str, upgrades: usize, cert: Option<&TestCert>) -> Seen {
    let scratch = Scratch::new(example_name);
    let tag = unique_tag(example_name);
    let _strays = KillTagged(tag.clone());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pid_file = scratch.path("pid");
    let mut env = vec![
        ("ADDR".to_owned(), addr.to_string()),
        ("TABLEFLIP_PID_FILE".into(), pid_file.display().to_string()),
        ("TABLEFLIP_DRAIN_TIMEOUT".into(), "20s".into()),
        ("RUST_LOG".into(), "warn".into()),
        (TAG_VAR.into(), tag.clone()),
    ];
    if let Some(cert) = cert {
        env.push(("TLS_CERT".into(), cert.cert_path.display().to_string()));
        env.push(("TLS_KEY".into(), cert.key_path.display().to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut svc = Service::start(&example(example_name), &scratch, &env);
    let first = svc.first_pid();
    let named = || -> Option<i32> { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() };
    wait_until("the first ready", || named() == Some(first));

    let scheme = if cert.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/");
    let wrk = Wrk::start(&url, 16);
    let h2load = H2load::start(&url);
    use HttpVersion::{H1, H2};
    let hyper = HyperLoad::start(addr, cert, &[H1, H1, H1, H2, H2]);
    std::thread::sleep(Duration::from_millis(300));

    let mut pid = first;
    let (mut ready, mut gone) = (Duration::ZERO, Duration::ZERO);
    for n in 1..=upgrades {
        let at = Instant::now();
        signal(pid, Signal::SIGHUP);
        let deadline = Instant::now() + WAIT;
        let next = loop {
            match named() {
                Some(next) if next != pid => break next,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "upgrade {n}: no new pid is ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        svc.track(next);
        ready += at.elapsed();
        let code = if pid == first {
            svc.wait_first_exit()
        } else {
            wait_reaped(pid, WAIT)
        };
        assert_eq!(code, Some(0), "upgrade {n}: old pid {pid} exit code");
        gone += at.elapsed();
        svc.forget(pid);
        pid = next;
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen = Seen {
        upgrades,
        ready,
        gone,
        wrk: wrk.finish(),
        h2load: h2load.finish(),
        hyper: hyper.finish(),
    };
    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_reaped(pid, WAIT), Some(0), "SIGTERM exit code");
    svc.forget(pid);
    let log = svc.stderr();
    assert!(!log.contains("panicked"), "{log}");
    seen
}

/// Every client got every answer, from many generations.
fn assert_nothing_lost(seen: &Seen) {
    assert!(seen.wrk.requests > 0, "wrk ran: {}", seen.wrk.output);
    assert_eq!(seen.wrk.errors(), 0, "wrk:\n{}", seen.wrk.output);
    assert!(seen.h2load.runs > 0 && seen.h2load.total > 0, "h2load ran");
    assert_eq!(
        seen.h2load.lost(),
        0,
        "h2load:\n{:#?}",
        seen.h2load.bad_runs
    );
    assert_eq!(seen.hyper.failed, 0, "hyper: {:#?}", seen.hyper.failures);
    assert_eq!(seen.hyper.retried, 0, "hyper: {:#?}", seen.hyper.failures);
    assert!(
        seen.hyper.pids.len() > seen.upgrades / 2,
        "the hyper clients reached many generations: {:?}",
        seen.hyper.pids
    );
}

/// 50 upgrades of the `http` example under wrk, h2load and the hyper clients: nothing lost.
/// Then the same load on `axum::serve(..).with_graceful_shutdown(tf.shutdown())`
/// (`examples/http_naive.rs`) for 20 upgrades, printed side by side: it loses requests,
/// which is why `tableflip::axum::serve` exists.
#[test]
fn fifty_upgrades_under_wrk_h2load_and_hyper_lose_no_request_where_the_naive_drain_does() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tool) = missing_tool(&["wrk", "h2load"]) {
        eprintln!("skipped: {tool} is not installed (Debian packages wrk, nghttp2-client)");
        return;
    }
    let ours = upgrades_under_load("http", UPGRADES, None);
    let naive = upgrades_under_load("http_naive", 20, None);
    eprintln!("| server | upgrades | wrk | h2load | hyper |");
    eprintln!("|---|---|---|---|---|");
    eprintln!("{}", ours.line("`http`: tableflip::axum::serve"));
    eprintln!(
        "{}",
        naive.line("`http_naive`: axum::serve + with_graceful_shutdown")
    );
    assert_nothing_lost(&ours);
    let naive_lost =
        naive.wrk.errors() + naive.h2load.lost() + naive.hyper.failed + naive.hyper.retried;
    assert!(
        naive_lost > 0,
        "the naive drain lost nothing in 20 upgrades under load"
    );
}

#[test]
fn fifty_upgrades_over_tls_lose_no_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tool) = missing_tool(&["wrk", "h2load"]) {
        eprintln!("skipped: {tool} is not installed (Debian packages wrk, nghttp2-client)");
        return;
    }
    let scratch = Scratch::new("https-cert");
    let cert = TestCert::generate(&scratch);
    let seen = upgrades_under_load("https", UPGRADES, Some(&cert));
    eprintln!(
        "{}",
        seen.line("`https`: Server::tls (h2 and HTTP/1.1 by ALPN)")
    );
    assert_nothing_lost(&seen);
}
