//! The parent's view of its child: start it with the handshake, wait until it is ready,
//! exits, times out, or the upgrade is cancelled; then hand it over and watch it.
//!
//! The successor is started through a *shim*: a forked copy of this process that forks and
//! executes the successor, reports its pid, and stays its parent only while it initialises.
//! A successor that exits before it is ready is reaped by the shim, which reports its exit
//! status; one that times out is killed and reaped by it. Once the successor is ready this
//! process tells the shim to exit and reaps it: the successor is then re-parented to the
//! nearest reaper above this process (systemd, or a subreaper), *before* systemd hears
//! `MAINPID=` naming it. systemd treats a main process that is not its child as an "alien" it
//! cannot supervise (at `systemctl stop` it does not wait for it and ends the unit failed);
//! a re-parented successor is its child like the first process was.
//!
//! After the handover this process watches the successor through a pidfd (Linux ≥ 5.3),
//! opened while the shim still held the successor unreaped, so the pid can never name
//! another process. A successor that begins a graceful stop while its parent lives writes
//! one more byte on its ready pipe (fd 3), so that a crash (end of file without it) can be
//! told from a deliberate stop, now that its exit status goes to its new parent.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::env::{Startup, is_inherited_only};
use crate::error::UpgradeError;
use crate::fds::Key;
use crate::handshake::{READY_BYTE, READY_FD, SENTINEL};
use crate::{gob, sys};

/// How long the shim may take to obey a command before it is killed.
const SHIM_GRACE: Duration = Duration::from_secs(2);

/// A successor that became ready and has been handed over: re-parented, no longer ours.
pub(crate) struct Ready {
    pub(crate) pid: u32,
    /// The write end of its names pipe: holding it open tells it we are alive.
    pub(crate) names: OwnedFd,
    /// What to watch it with.
    pub(crate) watch: Watch,
}

/// Watches a handed-over successor until it is gone.
pub(crate) struct Watch {
    pid: u32,
    /// Readable once the successor has exited (Linux); `None` where pidfds do not exist.
    pidfd: Option<OwnedFd>,
    /// The read end of its ready pipe: a byte means "stopping on purpose", end of file that
    /// it exited or closed the pipe.
    ready: pipe::Receiver,
}

/// How a watched successor went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gone {
    /// It said it was stopping (a stop signal or request) before it exited.
    Stopped,
    /// It exited without saying so: a crash.
    Crashed,
    /// It does not say whether it stops on purpose (a peer that closes its ready pipe after
    /// the ready byte, as Go tableflip does), or it can't be watched here: left alone.
    Unknown,
}

/// Starts the successor and waits for the outcome; on success hands it over (the shim is
/// reaped, the successor re-parented).
pub(crate) async fn upgrade(
    startup: &Startup,
    files: Vec<(Key, Arc<OwnedFd>)>,
    timeout: Duration,
    mut cancel: watch::Receiver<bool>,
    on_started: impl FnOnce(u32),
    reparent_first: bool,
) -> Result<Ready, UpgradeError> {
    let started = Instant::now();
    let program = startup.program().map_err(|source| UpgradeError::Spawn {
        path: PathBuf::from(&startup.argv0),
        source,
    })?;
    let names: Vec<Vec<String>> = files.iter().map(|(k, _)| k.to_names_entry()).collect();
    let bytes = gob::encode_names(&names);

    let mut child = spawn_retrying_busy(startup, &program, files, &bytes)
        .await
        .map_err(|e| match e {
            Spawned::Failed(source) => UpgradeError::Spawn {
                path: program.clone(),
                source,
            },
            Spawned::Io(e) => UpgradeError::Io(e),
        })?;
    let pid = child.pid;
    tracing::info!(child_pid = pid, program = %program.display(), "started new process");
    on_started(pid);

    let outcome = {
        let names_tx = &mut child.names;
        let write_names = async {
            // A child that dies before reading gives EPIPE: its exit is reported instead.
            let _ = names_tx.write_all(&bytes[child.names_sent..]).await;
            std::future::pending::<()>().await
        };
        let ready_rx = &mut child.ready;
        let wait_ready = async {
            let mut byte = [0u8; 1];
            match ready_rx.read(&mut byte).await {
                Ok(1) if byte[0] == READY_BYTE => {}
                // EOF or another byte: not ready. Keep waiting for exit or the timeout.
                _ => std::future::pending::<()>().await,
            }
        };
        let report = &mut child.report;
        tokio::select! {
            // A child that says ready and exits at once did say ready: check that first.
            biased;
            () = wait_ready => Ok(()),
            () = write_names => unreachable!("write_names never completes"),
            status = exited(report) => Err(match status {
                Ok(status) => UpgradeError::ChildExited { pid, status },
                Err(e) => UpgradeError::Io(e),
            }),
            () = tokio::time::sleep(timeout) => Err(UpgradeError::TimedOut { pid, timeout }),
            _ = cancel.wait_for(|c| *c) => Err(UpgradeError::Terminating),
        }
    };
    // The exit can be reported before the reactor has seen the ready byte that the child
    // wrote before exiting: a child that said ready did say ready.
    let outcome = match outcome {
        Err(UpgradeError::ChildExited { .. }) if said_ready(&child.ready) => Ok(()),
        other => other,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;

    match outcome {
        Ok(()) => {
            tracing::info!(child_pid = pid, elapsed_ms, "new process is ready");
            Ok(child.hand_over(reparent_first).await?)
        }
        Err(err) => {
            match &err {
                UpgradeError::ChildExited { .. } => child.reap_shim().await,
                _ => {
                    let status = child.kill().await;
                    tracing::warn!(
                        child_pid = pid,
                        ?status,
                        "killed and reaped the new process"
                    );
                }
            }
            tracing::warn!(child_pid = pid, elapsed_ms, error = %err, "upgrade failed");
            Err(err)
        }
    }
}

/// A successor still initialising, with its shim.
struct Starting {
    shim: Pid,
    /// Readable once the shim has exited (Linux): reaped at once, not polled for.
    shim_pidfd: Option<ShimPidfd>,
    pid: u32,
    pidfd: Option<OwnedFd>,
    control: pipe::Sender,
    report: pipe::Receiver,
    ready: pipe::Receiver,
    names: pipe::Sender,
    /// How much of the names went into the pipe before the fork.
    names_sent: usize,
    /// Set once the shim has been reaped.
    reaped: bool,
}

enum Spawned {
    /// The program could not be executed (the OS error of `execve` or `fork`).
    Failed(std::io::Error),
    /// Setting up failed.
    Io(std::io::Error),
}

/// Starts the shim and the successor, retrying for a short while if the executable is busy
/// (`ETXTBSY`): a binary a deploy tool has just written may still be open for writing in
/// some process, for example one that forked while the file was open and has not exec'd yet.
async fn spawn_retrying_busy(
    startup: &Startup,
    program: &std::path::Path,
    files: Vec<(Key, Arc<OwnedFd>)>,
    names: &[u8],
) -> Result<Starting, Spawned> {
    let files: Vec<Arc<OwnedFd>> = files.into_iter().map(|(_, fd)| fd).collect();
    let mut attempts = 0;
    loop {
        match spawn(startup, program, &files, names).await {
            Err(Spawned::Failed(e))
                if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempts < 50 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

async fn spawn(
    startup: &Startup,
    program: &std::path::Path,
    files: &[Arc<OwnedFd>],
    names: &[u8],
) -> Result<Starting, Spawned> {
    let io = Spawned::Io;
    let (ready_r, ready_w) = sys::pipe_cloexec().map_err(io)?;
    let (names_r, names_w) = sys::pipe_cloexec().map_err(io)?;
    // The names go into the pipe now, as much as it holds (all of them, but for thousands
    // of listeners): the successor reads them as soon as it starts, without waiting for
    // this process to hear from the shim first.
    let names_w = pipe::Sender::from_owned_fd(names_w).map_err(io)?;
    let names_sent = names_w.try_write(names).unwrap_or(0);
    let (control_r, control_w) = sys::pipe_cloexec().map_err(io)?;
    let (report_r, report_w) = sys::pipe_cloexec().map_err(io)?;
    let (err_r, err_w) = sys::pipe_cloexec().map_err(io)?;

    // fd 3, fd 4, then fd 5+i, wherever they are now: the successor moves what is in the way.
    let placed: Vec<BorrowedFd<'_>> = [ready_w.as_fd(), names_r.as_fd()]
        .into_iter()
        .chain(files.iter().map(|fd| fd.as_fd()))
        .collect();
    let mut args = vec![startup.argv0.clone()];
    args.extend(startup.args.iter().cloned());
    // What describes this process's own inheritance (the handshake, socket activation) is
    // not the successor's: it gets the handshake afresh, and never systemd's variables.
    let mut env: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| !is_inherited_only(k))
        .collect();
    env.push((SENTINEL.into(), "yes".into()));
    let exec = sys::Exec {
        program,
        cwd: &startup.cwd,
        args: &args,
        env: &env,
    };
    // The plan (raw pointers into its own strings) lives in this block only: the future
    // stays `Send`.
    let shim = {
        let plan = sys::ShimPlan::new(
            exec,
            &placed,
            READY_FD,
            control_r.as_fd(),
            report_w.as_fd(),
            (err_r.as_fd(), err_w.as_fd()),
        )
        .map_err(io)?;

        // The fork runs right here, on the task that asked for the upgrade: the copy of the
        // page tables takes a fraction of a millisecond for a service of a few megabytes, less
        // than starting a blocking-pool thread for it would, and it needs no new thread, so an
        // upgrade can't fail (or panic, as tokio's `spawn_blocking` does) where the system has
        // no thread to spare. A service with gigabytes resident pays its fork here, once per
        // upgrade.
        sys::fork_shim(&plan)
    };
    drop(placed);
    drop((control_r, report_w, err_r, err_w, ready_w, names_r));
    let shim = match shim {
        Ok(shim) => shim,
        // No process to spare (EAGAIN) or no memory: the new process could not start.
        Err(e) => return Err(Spawned::Failed(e)),
    };

    // The shim is our unreaped child: its pid can't name another process yet.
    #[cfg(target_os = "linux")]
    let shim_pidfd = sys::pidfd_open(shim.as_raw())
        .and_then(sys::async_pidfd)
        .ok();
    #[cfg(not(target_os = "linux"))]
    let shim_pidfd = None;
    let mut starting = Starting {
        shim,
        shim_pidfd,
        pid: 0,
        pidfd: None,
        control: pipe::Sender::from_owned_fd(control_w).map_err(io)?,
        report: pipe::Receiver::from_owned_fd(report_r).map_err(io)?,
        ready: pipe::Receiver::from_owned_fd(ready_r).map_err(io)?,
        names: names_w,
        names_sent,
        reaped: false,
    };
    let first = tokio::time::timeout(SHIM_GRACE * 5, read_record(&mut starting.report)).await;
    match first {
        Ok(Ok(Some((sys::REC_STARTED, pid)))) => {
            starting.pid = pid as u32;
            // The shim does not reap the successor before it reads CMD_WATCH: the pid still
            // names our successor here.
            #[cfg(target_os = "linux")]
            {
                starting.pidfd = sys::pidfd_open(pid).ok();
            }
            let _ = starting.control.write_all(&[sys::CMD_WATCH]).await;
            Ok(starting)
        }
        Ok(Ok(Some((sys::REC_EXEC_FAILED, errno)))) => {
            starting.reap_shim().await;
            Err(Spawned::Failed(std::io::Error::from_raw_os_error(errno)))
        }
        other => {
            let _ = nix::sys::signal::kill(shim, Signal::SIGKILL);
            starting.reap_shim().await;
            Err(io(std::io::Error::other(format!(
                "the process that starts the new one failed: {other:?}"
            ))))
        }
    }
}

/// Reads one record from the shim; `None` at end of file.
async fn read_record(report: &mut pipe::Receiver) -> std::io::Result<Option<(u8, i32)>> {
    let mut rec = [0u8; sys::RECORD_LEN];
    match report.read_exact(&mut rec).await {
        Ok(_) => Ok(Some((
            rec[0],
            i32::from_ne_bytes(rec[1..].try_into().expect("4 bytes")),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until the shim reports the successor's exit; its status.
async fn exited(report: &mut pipe::Receiver) -> std::io::Result<ExitStatus> {
    loop {
        match read_record(report).await? {
            Some((sys::REC_EXITED, status)) => return Ok(ExitStatus::from_raw(status)),
            Some(_) => continue,
            None => {
                // The shim died without a report (killed by an operator): the successor
                // is re-parented and no longer ours to wait for.
                return std::future::pending().await;
            }
        }
    }
}

impl Starting {
    /// Tells the shim to exit and reaps it: the successor is then re-parented.
    ///
    /// With `reparent_first`, it returns only once the shim has exited, so that the
    /// successor is already re-parented (systemd must hear `MAINPID=` only then). Without,
    /// the shim is reaped by a task of its own and exits at idle priority: its exit (the
    /// teardown of a copy of this process, longer with many descriptors) is off the
    /// handover's path and takes no CPU from the two processes that serve meanwhile.
    async fn hand_over(mut self, reparent_first: bool) -> Result<Ready, UpgradeError> {
        if reparent_first {
            let _ = self.control.write_all(&[sys::CMD_RELEASE]).await;
            self.reap_shim().await;
        } else {
            let _ = self.control.write_all(&[sys::CMD_RELEASE_IDLE]).await;
            self.reaped = true;
            drop(tokio::spawn(reap(self.shim, self.shim_pidfd.take())));
        }
        let names = std::mem::replace(&mut self.names, placeholder_sender()?)
            .into_blocking_fd()
            .map_err(UpgradeError::Io)?;
        let ready = std::mem::replace(&mut self.ready, placeholder_receiver()?);
        Ok(Ready {
            pid: self.pid,
            names,
            watch: Watch {
                pid: self.pid,
                pidfd: self.pidfd.take(),
                ready,
            },
        })
    }

    /// Kills the successor through the shim and waits for its status (bounded; a shim that
    /// does not answer is killed, and the successor through its pidfd).
    async fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.control.write_all(&[sys::CMD_KILL]).await;
        let status = tokio::time::timeout(SHIM_GRACE, exited(&mut self.report))
            .await
            .ok()
            .and_then(Result::ok);
        if status.is_none() {
            #[cfg(target_os = "linux")]
            if let Some(pidfd) = &self.pidfd {
                let _ = sys::pidfd_kill(pidfd.as_fd(), Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(self.shim, Signal::SIGKILL);
        }
        self.reap_shim().await;
        status
    }

    /// Waits (bounded) for the shim to exit and reaps it.
    async fn reap_shim(&mut self) {
        if self.reaped {
            return;
        }
        // The shim closes its end of the report pipe when it exits.
        let eof = async { while let Ok(Some(_)) = read_record(&mut self.report).await {} };
        if tokio::time::timeout(SHIM_GRACE, eof).await.is_err() {
            let _ = nix::sys::signal::kill(self.shim, Signal::SIGKILL);
        }
        reap(self.shim, self.shim_pidfd.take()).await;
        self.reaped = true;
    }
}

/// A pidfd of the shim, registered with the reactor.
#[cfg(target_os = "linux")]
type ShimPidfd = tokio::io::unix::AsyncFd<OwnedFd>;
#[cfg(not(target_os = "linux"))]
type ShimPidfd = std::convert::Infallible;

/// Reaps `shim`, which has exited or is about to (it closed its report pipe, or was
/// killed): waits for its pidfd to turn readable where there is one, then `waitpid`, polled
/// without blocking a thread, bounded; a shim still there after
/// [`SHIM_GRACE`] is killed, and left to the process's end if even that does not end it.
async fn reap(shim: Pid, pidfd: Option<ShimPidfd>) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let deadline = Instant::now() + 2 * SHIM_GRACE;
    // With a pidfd, the exit itself wakes this task: no polling, and no sleep between the
    // shim's exit and the handover (a shim with a thousand descriptors takes a while).
    #[cfg(target_os = "linux")]
    if let Some(pidfd) = &pidfd {
        let _ = tokio::time::timeout(SHIM_GRACE, pidfd.readable()).await;
    }
    drop(pidfd);
    let mut killed = false;
    for pause in (0..).map(|i: u32| Duration::from_micros(100 << i.min(10))) {
        match waitpid(shim, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            // Reaped, or not ours to reap any more.
            _ => return,
        }
        if !killed && Instant::now() + SHIM_GRACE >= deadline {
            let _ = nix::sys::signal::kill(shim, Signal::SIGKILL);
            killed = true;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                shim = shim.as_raw(),
                "the process that started the new one does not exit"
            );
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

impl Drop for Starting {
    /// An upgrade abandoned halfway (its future dropped): the shim is told to kill the
    /// successor, and reaped by a task of its own (or, outside a runtime, a thread), so
    /// that nothing is left behind. Nothing here can panic: a runtime that is shutting down
    /// drops the task, and the process's end collects the shim.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        use std::io::Write;
        if let Ok(fd) = self.control.as_fd().try_clone_to_owned() {
            let _ = std::fs::File::from(fd).write_all(&[sys::CMD_KILL]);
        }
        let shim = self.shim;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(reap(shim, self.shim_pidfd.take()))),
            Err(_) => drop(std::thread::Builder::new().spawn(move || {
                let _ = nix::sys::wait::waitpid(shim, None);
            })),
        }
    }
}

fn placeholder_sender() -> Result<pipe::Sender, UpgradeError> {
    let (_r, w) = sys::pipe_cloexec().map_err(UpgradeError::Io)?;
    pipe::Sender::from_owned_fd(w).map_err(UpgradeError::Io)
}

fn placeholder_receiver() -> Result<pipe::Receiver, UpgradeError> {
    let (r, _w) = sys::pipe_cloexec().map_err(UpgradeError::Io)?;
    pipe::Receiver::from_owned_fd(r).map_err(UpgradeError::Io)
}

impl Watch {
    /// The successor's pidfd, where pidfds exist.
    pub(crate) fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(std::os::fd::AsFd::as_fd)
    }

    /// Waits until the successor is gone, and says how it went.
    pub(crate) async fn gone(mut self) -> Gone {
        #[cfg(target_os = "linux")]
        let Some(pidfd) = self.pidfd.take() else {
            return std::future::pending().await;
        };
        #[cfg(not(target_os = "linux"))]
        return std::future::pending().await;
        #[cfg(target_os = "linux")]
        {
            let Ok(pidfd) = sys::async_pidfd(pidfd) else {
                return std::future::pending().await;
            };
            let mut stopping = false;
            let mut closed_while_alive = false;
            let mut buf = [0u8; 16];
            let exited = async {
                let _ = pidfd.readable().await;
            };
            tokio::pin!(exited);
            loop {
                tokio::select! {
                    biased;
                    n = self.ready.read(&mut buf), if !closed_while_alive => match n {
                        Ok(n) if n > 0 => stopping = true,
                        _ => {
                            // End of file: the successor exits (its descriptors close just
                            // before its pidfd turns readable), or it closed the pipe early.
                            if tokio::time::timeout(Duration::from_millis(200), &mut exited)
                                .await
                                .is_ok()
                            {
                                break;
                            }
                            closed_while_alive = !stopping;
                        }
                    },
                    () = &mut exited => break,
                }
            }
            // This process may be the reaper it was re-parented to (PID 1, a subreaper).
            let status = sys::pidfd_reap(pidfd.get_ref().as_fd()).map(ExitStatus::from_raw);
            tracing::debug!(
                child_pid = self.pid,
                stopping,
                ?status,
                "the successor is gone"
            );
            if stopping || status.is_some_and(|s| s.success()) {
                Gone::Stopped
            } else if closed_while_alive {
                Gone::Unknown
            } else {
                Gone::Crashed
            }
        }
    }
}

/// Is the ready byte waiting in the pipe? Reads the descriptor directly, not through the
/// reactor's readiness (which may lag behind).
fn said_ready(ready: &pipe::Receiver) -> bool {
    let mut byte = [0u8; 1];
    matches!(nix::unistd::read(ready.as_raw_fd(), &mut byte), Ok(1)) && byte[0] == READY_BYTE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::RawFd;

    const ALONE: &str = "TABLEFLIP_CHILD_TEST_ALONE";

    /// What a process started as `argv0 args` in `cwd` would have captured.
    fn startup(argv0: &str, args: Vec<std::ffi::OsString>, cwd: &std::path::Path) -> Startup {
        Startup {
            cwd: cwd.to_owned(),
            argv0: argv0.into(),
            args,
            handoff: std::sync::Mutex::new(None),
            listen_vars: [None, None, None],
            activation: std::sync::Mutex::new(None),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Runs the test named `name` in a process of its own (this test binary, re-executed
    /// with only that test on one thread), for a test that places descriptors at low numbers
    /// and so must own the descriptor table. True in that process; false in the caller, once
    /// the process passed.
    fn alone(name: &str) -> bool {
        if std::env::var_os(ALONE).is_some() {
            return true;
        }
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(ALONE, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the test alone");
        let mut status = None;
        for _ in 0..600 {
            status = child.try_wait().expect("wait");
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("output");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{name} alone: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        false
    }

    /// Sources that sit on one another's targets, in reverse, reach the successor each at
    /// its own number: the successor lifts what is in the way before it places anything.
    /// (A connection that closed just before an upgrade leaves a low number free; a pipe of
    /// the upgrade or an accepted socket takes it.)
    #[test]
    fn sources_sitting_on_targets_reach_the_successor_in_order() {
        let name = "child::tests::sources_sitting_on_targets_reach_the_successor_in_order";
        if !alone(name) {
            return;
        }
        const FILES: RawFd = 6;
        let first_file = READY_FD + 2;
        let last = first_file + FILES - 1;
        // File i sits on the target of a file placed after it (5..=10, reversed), where the
        // number is ours to take: fill every free number up to `last`, then free one at a
        // time and let a copy take it (the lowest free number).
        let mut fillers = std::collections::BTreeMap::new();
        for _ in 0..=last {
            let f = std::fs::File::open("/dev/null").expect("/dev/null");
            if f.as_raw_fd() > last {
                break;
            }
            fillers.insert(f.as_raw_fd(), f);
        }
        let spots: Vec<RawFd> = fillers
            .keys()
            .rev()
            .copied()
            .filter(|&fd| fd >= first_file)
            .collect();
        let mut files = Vec::new();
        let mut inodes = Vec::new();
        for i in 0..FILES as usize {
            let (r, _w) = nix::unistd::pipe().expect("pipe");
            let placed = match spots.get(i) {
                Some(&at) => {
                    fillers.remove(&at);
                    let copy = r.try_clone().expect("dup");
                    assert_eq!(copy.as_raw_fd(), at, "the test's own placement");
                    copy
                }
                None => r,
            };
            inodes.push(
                nix::sys::stat::fstat(placed.as_raw_fd())
                    .expect("fstat")
                    .st_ino,
            );
            files.push(Arc::new(placed));
        }
        let misplaced = files
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                let fd = f.as_raw_fd();
                fd >= first_file && fd <= last && fd != first_file + *i as RawFd
            })
            .count();
        assert!(
            misplaced >= 2,
            "only {misplaced} files sit on another's target"
        );
        // The numbers below the files go free: the upgrade's own pipes may take them.
        drop(fillers);
        let dir = std::env::temp_dir().join(format!("tableflip-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("out");
        let script = format!(
            "for fd in $(seq {READY_FD} {last}); do stat -L -c '%i %F' /proc/self/fd/$fd; done > {}",
            out.display()
        );
        let startup = startup("/bin/sh", vec!["-c".into(), script.into()], &dir);
        let rt = runtime();
        let status = rt.block_on(async {
            let mut starting =
                match spawn(&startup, std::path::Path::new("/bin/sh"), &files, &[]).await {
                    Ok(s) => s,
                    Err(Spawned::Failed(e) | Spawned::Io(e)) => panic!("spawn: {e}"),
                };
            let status =
                tokio::time::timeout(Duration::from_secs(20), exited(&mut starting.report)).await;
            if status.is_err() {
                starting.kill().await;
            } else {
                starting.reap_shim().await;
            }
            status
        });
        let status = status
            .expect("the successor exited in time")
            .expect("status");
        assert!(status.success(), "the successor: {status:?}");
        let text = std::fs::read_to_string(&out).expect("the successor's listing");
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), (last - READY_FD + 1) as usize, "{text}");
        assert!(
            lines[0].ends_with("fifo") && lines[1].ends_with("fifo"),
            "{text}"
        );
        for (i, inode) in inodes.iter().enumerate() {
            assert_eq!(
                lines[2 + i],
                format!("{inode} fifo"),
                "file {i} at fd {}: {text}",
                first_file + i as RawFd
            );
        }
    }

    /// An `execve` that fails is reported as a spawn failure (with its errno) even when the
    /// exec-error pipe sits among the targets, where a placed descriptor would replace it.
    #[test]
    fn an_exec_failure_is_reported_when_its_pipe_sits_on_a_target() {
        let name = "child::tests::an_exec_failure_is_reported_when_its_pipe_sits_on_a_target";
        if !alone(name) {
            return;
        }
        // Thirty files high up, the numbers below them free: the runtime's descriptors and
        // the upgrade's five pipes take the lowest, and the exec-error pipe (the last) sits
        // among the targets 3..=32.
        let fillers: Vec<std::fs::File> = (0..60)
            .map(|_| std::fs::File::open("/dev/null").expect("/dev/null"))
            .collect();
        let files: Vec<Arc<OwnedFd>> = (0..30)
            .map(|_| Arc::new(nix::unistd::pipe().expect("pipe").0))
            .collect();
        assert!(
            files.iter().all(|f| f.as_raw_fd() > 32),
            "files above the targets"
        );
        drop(fillers);
        let startup = startup(
            "/nonexistent/tableflip-successor",
            Vec::new(),
            &std::env::temp_dir(),
        );
        let rt = runtime();
        let program = std::path::Path::new("/nonexistent/tableflip-successor");
        let spawned = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                spawn(&startup, program, &files, &[]),
            )
            .await
        });
        match spawned.expect("spawn answered in time") {
            Err(Spawned::Failed(e)) => {
                assert_eq!(e.raw_os_error(), Some(nix::libc::ENOENT), "{e}")
            }
            Err(Spawned::Io(e)) => panic!("not an exec failure: {e}"),
            Ok(mut starting) => {
                rt.block_on(starting.kill());
                panic!("the failed exec was taken for a start");
            }
        }
    }
}
