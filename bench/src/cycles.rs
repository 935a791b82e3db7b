//! Upgrade cycles: signal (or spawn) to the new process answering, and to the old one gone.
//!
//! Every subject is cycled in turn, round-robin, so that the slow drifts of a shared machine
//! fall on all of them alike and their ratios compare like with like.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::probe;
use crate::procs::{self, Reaper, WAIT, free_addr};

/// One measured cycle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cycle {
    /// Signal (or spawn) to the new process answering.
    pub(crate) ready: Duration,
    /// Signal (or spawn) to the old process (or the spawned one) exited and reaped.
    pub(crate) gone: Duration,
}

/// Something whose restart can be timed.
pub(crate) trait Subject {
    /// Performs one cycle.
    fn cycle(&mut self) -> Result<Cycle, String>;
}

/// A service answering hello greetings on `addr`, upgraded with SIGHUP, its listener handed
/// over: tableflip, Go tableflip and ecdysis alike.
pub(crate) struct Hello {
    addr: SocketAddr,
    pid: i32,
    log: PathBuf,
}

impl Hello {
    /// Starts `exe` with `ADDR` set and waits until it answers.
    pub(crate) fn start(exe: &Path, tag: &str, envs: &[(&str, String)]) -> Result<Self, String> {
        let addr = free_addr()?;
        let log = procs::scratch().join(format!("{tag}.log"));
        let mut all = vec![("ADDR", addr.to_string())];
        all.extend(envs.iter().cloned());
        let (pid, _) = procs::spawn(&mut procs::service_command(exe, &all, &log))
            .map_err(|e| format!("can't start {}: {e}", exe.display()))?;
        probe::poll(WAIT, || probe::hello(addr).ok().filter(|p| *p == pid)).ok_or_else(|| {
            format!(
                "{} did not answer on {addr}; its log:\n{}",
                exe.display(),
                procs::tail(&log, 20)
            )
        })?;
        Ok(Hello { addr, pid, log })
    }
}

impl Subject for Hello {
    fn cycle(&mut self) -> Result<Cycle, String> {
        let old = self.pid;
        let t0 = Instant::now();
        procs::signal(old, Signal::SIGHUP)?;
        let new = probe::poll(WAIT, || probe::hello(self.addr).ok().filter(|p| *p != old))
            .ok_or_else(|| {
                format!(
                    "no new pid answered within {WAIT:?} of SIGHUP to {old}; log:\n{}",
                    procs::tail(&self.log, 20)
                )
            })?;
        let ready = t0.elapsed();
        let exit = Reaper::get().wait(old, WAIT).ok_or_else(|| {
            format!(
                "old pid {old} still there {WAIT:?} after SIGHUP; log:\n{}",
                procs::tail(&self.log, 20)
            )
        })?;
        self.pid = new;
        if exit.code != 0 {
            return Err(format!("old pid {old} exited with code {}", exit.code));
        }
        Ok(Cycle {
            ready,
            gone: exit.at - t0,
        })
    }
}

/// The floor: fork+exec of a program that writes one byte to an inherited pipe.
pub(crate) struct Floor {
    exe: PathBuf,
}

impl Floor {
    pub(crate) fn new(exe: &Path) -> Floor {
        Floor {
            exe: exe.to_owned(),
        }
    }
}

impl Subject for Floor {
    fn cycle(&mut self) -> Result<Cycle, String> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let mut cmd = Command::new(&self.exe);
        // A pre_exec hook: std then forks and execs, as an upgrade does.
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: w,
            child_fd: 3,
        }])
        .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let (pid, _) = procs::spawn(&mut cmd).map_err(|e| format!("spawn floor: {e}"))?;
        drop(cmd); // our copy of the write end
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(WAIT).unwrap_or(PollTimeout::MAX);
        let mut byte = [0u8; 1];
        match poll(&mut fds, timeout) {
            Ok(1) if nix::unistd::read(r.as_raw_fd(), &mut byte) == Ok(1) => {}
            other => return Err(format!("floor pid {pid} wrote nothing: {other:?}")),
        }
        let ready = t0.elapsed();
        let exit = Reaper::get()
            .wait(pid, WAIT)
            .ok_or_else(|| format!("floor pid {pid} did not exit"))?;
        Ok(Cycle {
            ready,
            gone: exit.at - t0,
        })
    }
}

/// The peer: shellflip's restart (SIGUSR1) of a hello service. No listener is handed over:
/// each process binds its own port and says where on stdout.
pub(crate) struct Shellflip {
    pid: i32,
    lines: mpsc::Receiver<(i32, SocketAddr)>,
    log: PathBuf,
}

impl Shellflip {
    pub(crate) fn start(exe: &Path) -> Result<Shellflip, String> {
        let log = procs::scratch().join("shellflip.log");
        let socket = procs::scratch().join("shellflip.sock");
        let mut cmd = procs::service_command(
            exe,
            &[("SHELLFLIP_SOCKET", socket.display().to_string())],
            &log,
        );
        cmd.stdout(Stdio::piped());
        let (pid, stdout) =
            procs::spawn(&mut cmd).map_err(|e| format!("can't start {}: {e}", exe.display()))?;
        let stdout = stdout.ok_or("no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        // Ends when every generation has closed the pipe, i.e. exited.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut words = line.split_whitespace();
                let pid = words.next().and_then(|w| w.parse().ok());
                let addr = words.next().and_then(|w| w.parse().ok());
                if let (Some(pid), Some(addr)) = (pid, addr) {
                    if tx.send((pid, addr)).is_err() {
                        return;
                    }
                }
            }
        });
        let mut me = Shellflip { pid, lines, log };
        me.wait_answer(pid)?;
        Ok(me)
    }

    /// Waits for `pid` to announce its address and to answer there.
    fn wait_answer(&mut self, pid: i32) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (p, addr) = self.lines.recv_timeout(left).map_err(|_| {
                format!(
                    "shellflip pid {pid} did not announce its address; log:\n{}",
                    procs::tail(&self.log, 20)
                )
            })?;
            if p != pid && pid != 0 {
                continue;
            }
            let answered = probe::poll(left, || probe::hello(addr).ok().filter(|a| *a == p));
            if answered.is_none() {
                return Err(format!("shellflip pid {p} did not answer on {addr}"));
            }
            self.pid = p;
            return Ok(());
        }
    }
}

impl Subject for Shellflip {
    fn cycle(&mut self) -> Result<Cycle, String> {
        let old = self.pid;
        let t0 = Instant::now();
        procs::signal(old, Signal::SIGUSR1)?;
        // The successor's pid is not known before it announces itself: 0 takes the first.
        self.wait_answer(0)?;
        let ready = t0.elapsed();
        if self.pid == old {
            return Err(format!("shellflip pid {old} announced itself again"));
        }
        let exit = Reaper::get().wait(old, WAIT).ok_or_else(|| {
            format!(
                "shellflip pid {old} still there {WAIT:?} after SIGUSR1; log:\n{}",
                procs::tail(&self.log, 20)
            )
        })?;
        Ok(Cycle {
            ready,
            gone: exit.at - t0,
        })
    }
}

/// The cycles of one subject, or why it stopped.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) cycles: Vec<Cycle>,
    pub(crate) error: Option<String>,
    /// Why the subject was not measured on this machine (not an error).
    pub(crate) skipped: Option<String>,
}

/// Cycles every subject `rounds` times in turn, `gap` apart. A subject that fails is left
/// out of the following rounds; its error is kept.
pub(crate) fn round_robin(
    subjects: &mut [(String, Box<dyn Subject>)],
    rounds: usize,
    gap: Duration,
    mut progress: impl FnMut(&str),
) -> Vec<Record> {
    let mut records: Vec<Record> = subjects.iter().map(|_| Record::default()).collect();
    for _ in 0..rounds {
        for ((name, subject), record) in subjects.iter_mut().zip(records.iter_mut()) {
            if record.error.is_some() {
                continue;
            }
            match subject.cycle() {
                Ok(c) => record.cycles.push(c),
                Err(e) => record.error = Some(e),
            }
            progress(name);
            std::thread::sleep(gap);
        }
    }
    records
}
