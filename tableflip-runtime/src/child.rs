//! The parent's view of its child: start it with the handshake, wait until it is ready,
//! exits, times out, or the upgrade is cancelled. No child is ever left unreaped.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::env::{SENTINEL, Startup};
use crate::error::UpgradeError;
use crate::fds::Key;
use crate::parent::{FIRST_FILE_FD, READY_BYTE, READY_FD};
use crate::{gob, sys};

/// A successor that became ready. Holding `names` open tells it we are alive.
pub(crate) struct Ready {
    pub(crate) pid: u32,
    pub(crate) names: OwnedFd,
    /// The running successor, for the caller to reap (and watch).
    pub(crate) child: tokio::process::Child,
}

/// Starts the successor and waits for the outcome.
pub(crate) async fn upgrade(
    startup: &Startup,
    files: Vec<(Key, OwnedFd)>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<Ready, UpgradeError> {
    let started = Instant::now();
    let program = startup.program().map_err(|source| UpgradeError::Spawn {
        path: PathBuf::from(&startup.argv0),
        source,
    })?;

    let (ready_r, ready_w) = sys::pipe_cloexec().map_err(UpgradeError::Io)?;
    let (names_r, names_w) = sys::pipe_cloexec().map_err(UpgradeError::Io)?;
    let names: Vec<Vec<String>> = files.iter().map(|(k, _)| k.to_names_entry()).collect();
    let bytes = gob::encode_names(&names);

    // fd 3, fd 4, then fd 5+i. `files` already sit above the highest target (see
    // `Fds::snapshot`); the two pipe ends are moved there too, so that placing one never
    // overwrites another still to be placed.
    let first_free = FIRST_FILE_FD + files.len() as RawFd;
    let mut placed = Vec::with_capacity(files.len() + 2);
    for fd in [ready_w.as_fd(), names_r.as_fd()] {
        placed.push(sys::dup_at_least(fd, first_free).map_err(UpgradeError::Io)?);
    }
    placed.extend(files.into_iter().map(|(_, fd)| fd));

    let mut cmd = std::process::Command::new(&program);
    cmd.arg0(&startup.argv0)
        .args(&startup.args)
        .current_dir(&startup.cwd)
        .env(SENTINEL, "yes");
    sys::place_fds(&mut cmd, &placed, READY_FD);
    let child = spawn_retrying_busy(tokio::process::Command::from(cmd))
        .await
        .map_err(|source| UpgradeError::Spawn {
            path: program.clone(),
            source,
        })?;
    // If this future is dropped before the outcome (the caller gave up), the child dies too.
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().expect("just set");
    // The child has its copies; ours must go, or we would never see EOF on the ready pipe.
    drop(placed);
    drop(ready_w);
    drop(names_r);
    let pid = child.id().unwrap_or_default();
    tracing::info!(child_pid = pid, program = %program.display(), "started new process");

    let mut ready_r = pipe::Receiver::from_owned_fd(ready_r).map_err(UpgradeError::Io)?;
    let mut names_tx = pipe::Sender::from_owned_fd(names_w).map_err(UpgradeError::Io)?;

    let outcome = {
        let write_names = async {
            // A child that dies before reading gives EPIPE: its exit is reported instead.
            let _ = names_tx.write_all(&bytes).await;
            std::future::pending::<()>().await
        };
        let wait_ready = async {
            let mut byte = [0u8; 1];
            match ready_r.read(&mut byte).await {
                Ok(1) if byte[0] == READY_BYTE => {}
                // EOF or another byte: not ready. Keep waiting for exit or the timeout.
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            // A child that says ready and exits at once did say ready: check that first.
            biased;
            () = wait_ready => Ok(()),
            () = write_names => unreachable!("write_names never completes"),
            status = child.wait() => Err(match status {
                Ok(status) => UpgradeError::ChildExited { pid, status },
                Err(e) => UpgradeError::Io(e),
            }),
            () = tokio::time::sleep(timeout) => Err(UpgradeError::TimedOut { pid, timeout }),
            _ = stop.wait_for(|s| *s) => Err(UpgradeError::Terminating),
        }
    };
    // The exit can be noticed (SIGCHLD) before the reactor has seen the ready byte that the
    // child wrote before exiting: a child that said ready did say ready.
    let outcome = match outcome {
        Err(UpgradeError::ChildExited { .. }) if said_ready(&ready_r) => Ok(()),
        other => other,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;

    match outcome {
        Ok(()) => {
            let child = guard.0.take().expect("still held");
            tracing::info!(child_pid = pid, elapsed_ms, "new process is ready");
            let names = names_tx.into_blocking_fd().map_err(UpgradeError::Io)?;
            Ok(Ready { pid, names, child })
        }
        Err(err) => {
            if !matches!(err, UpgradeError::ChildExited { .. }) {
                let _ = child.start_kill();
                let status = child.wait().await;
                tracing::warn!(
                    child_pid = pid,
                    ?status,
                    "killed and reaped the new process"
                );
            }
            tracing::warn!(child_pid = pid, elapsed_ms, error = %err, "upgrade failed");
            Err(err)
        }
    }
}

/// Kills (and, through tokio's orphan reaper, reaps) a child that is dropped before its
/// upgrade had an outcome.
struct KillOnDrop(Option<tokio::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

/// Spawns, retrying for a short while if the executable is busy (`ETXTBSY`): a binary that a
/// deploy tool has just written may still be open for writing in some process, for example
/// one that forked while the file was open and has not exec'd yet.
///
/// The fork and exec run on tokio's blocking pool: they take a millisecond or more, and on a
/// worker thread they would stall every connection that worker serves.
async fn spawn_retrying_busy(
    mut cmd: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut attempts = 0;
    loop {
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = cmd.spawn();
            (cmd, result)
        })
        .await
        .map_err(std::io::Error::other)?;
        cmd = back;
        match result {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Is the ready byte waiting in the pipe? Reads the descriptor directly, not through the
/// reactor's readiness (which may lag behind).
fn said_ready(ready: &pipe::Receiver) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    matches!(nix::unistd::read(ready.as_raw_fd(), &mut byte), Ok(1)) && byte[0] == READY_BYTE
}
