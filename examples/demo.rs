//! The demo: `cargo run --release --example demo`.
//!
//! Starts the `hello` example on a free loopback port, keeps 16 clients connecting to it as
//! fast as they can, sends SIGHUP five times (each time waiting until a new pid answers and
//! the old one has exited), then stops the service and prints what happened: the pids, each
//! upgrade's time from signal to the new pid answering, requests served and failed.
//!
//! Bounded: every wait has a limit and the whole run takes a few seconds.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

const UPGRADES: usize = 5;
const CLIENTS: usize = 16;
const WAIT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `hello` binary next to this one, built first if it is missing.
fn hello_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("no directory")?;
    let hello = dir.join("hello");
    if !hello.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.parent().is_some_and(|p| p.ends_with("release"));
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--example", "hello"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("can't run cargo: {e}"))?;
        if !status.success() || !hello.exists() {
            return Err(format!("can't build {}", hello.display()));
        }
    }
    Ok(hello)
}

fn hello(addr: SocketAddr) -> std::io::Result<i32> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected answer {line:?}")))
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills and reaps every generation, whatever happens.
struct Generations {
    first: Child,
    pids: Vec<i32>,
}

impl Drop for Generations {
    fn drop(&mut self) {
        let _ = self.first.kill();
        let _ = self.first.wait();
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

fn gone(pid: i32) -> bool {
    // We are the subreaper: reap it if it is ours, then look.
    if let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
    {
        return true;
    }
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn run() -> Result<bool, String> {
    // Every generation is re-parented to us when its parent exits, so we can reap it.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| e.to_string())?;
    let hello_bin = hello_binary()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::env::temp_dir().join(format!("tableflip-demo-{}.log", std::process::id()));
    let first = Command::new(&hello_bin)
        .env("ADDR", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("can't start {}: {e}", hello_bin.display()))?;
    let mut gens = Generations {
        pids: vec![first.id() as i32],
        first,
    };
    let mut pid = wait_until("hello to answer", || hello(addr).ok())?;
    println!(
        "hello is serving on {addr} as pid {pid} (log: {})",
        log.display()
    );

    // The load: CLIENTS threads, one connection per request, bounded in time.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match hello(addr) {
                        Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let bar = ProgressBar::new(UPGRADES as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} upgrades  {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_prefix("tableflip");
    let mut rows = Vec::new();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..UPGRADES {
        let started = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| e.to_string())?;
        let new = wait_until("a new pid to answer", || {
            hello(addr).ok().filter(|p| *p != pid)
        })?;
        let answered = started.elapsed();
        gens.pids.push(new);
        wait_until("the old process to exit", || gone(pid).then_some(()))?;
        let exited = started.elapsed();
        rows.push((pid, new, answered, exited));
        bar.set_message(format!(
            "pid {pid} -> {new}, served {} failed {}",
            served.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        ));
        bar.inc(1);
        pid = new;
        std::thread::sleep(Duration::from_millis(300));
    }
    bar.finish();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| e.to_string())?;
    wait_until("the last process to stop", || gone(pid).then_some(()))?;

    println!();
    println!(
        "| upgrade | old pid | new pid | signal -> new pid answers | signal -> old pid gone |"
    );
    println!("|---|---|---|---|---|");
    for (i, (old, new, answered, exited)) in rows.iter().enumerate() {
        println!(
            "| {} | {old} | {new} | {:.1} ms | {:.1} ms |",
            i + 1,
            answered.as_secs_f64() * 1e3,
            exited.as_secs_f64() * 1e3
        );
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!();
    println!("requests served: {served}, failed: {failed}");
    let _ = std::fs::remove_file(&log);
    Ok(failed == 0)
}
