//! The one module with `unsafe`: taking ownership of inherited descriptors, placing
//! descriptors in a child between fork and exec, and scrubbing the environment.
//!
//! Everything else in the crate works with `OwnedFd`/`BorrowedFd` and safe wrappers.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

/// Is `fd` an open descriptor of this process?
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

/// Takes ownership of a descriptor this process inherited at a well-known number.
///
/// Returns `None` if no such descriptor is open. The descriptor is marked close-on-exec, so
/// that programs this process starts do not inherit it by accident.
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<Option<OwnedFd>> {
    let Ok(bits) = fcntl(fd, FcntlArg::F_GETFD) else {
        return Ok(None);
    };
    // SAFETY: the fd is open (F_GETFD succeeded) and was inherited across exec: nothing else
    // in this process owns it. Callers take each inherited number once, at start-up, before
    // any other code could have claimed it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let flags = FdFlag::from_bits_truncate(bits);
    if !flags.contains(FdFlag::FD_CLOEXEC) {
        fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC))?;
    }
    Ok(Some(owned))
}

/// The access mode (`O_RDONLY`, `O_WRONLY` or `O_RDWR`) of an open descriptor.
pub(crate) fn access_mode(fd: BorrowedFd<'_>) -> io::Result<OFlag> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    Ok(flags & OFlag::O_ACCMODE)
}

/// Duplicates `fd` to the lowest free number at or above `min`, close-on-exec.
pub(crate) fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let new = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Arranges for the child started by `cmd` to find `fds[i]` at descriptor number
/// `first + i`, without close-on-exec and with the open file description (and so its
/// `O_NONBLOCK` state) shared with ours.
///
/// The caller keeps `fds` alive until the child has been spawned. Every fd in `fds` must be
/// numbered at or above `first + fds.len()` (see [`dup_at_least`]), so that placing one never
/// overwrites another that is still to be placed.
pub(crate) fn place_fds(cmd: &mut std::process::Command, fds: &[OwnedFd], first: RawFd) {
    let plan: Vec<(RawFd, RawFd)> = fds
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.as_raw_fd(), first + i as RawFd))
        .collect();
    debug_assert!(
        plan.iter()
            .all(|&(src, _)| src >= first + fds.len() as RawFd)
    );
    let closure = move || -> io::Result<()> {
        for &(src, dst) in &plan {
            // SAFETY: dup2 is async-signal-safe; src is open in the forked child (the parent
            // keeps it alive until spawn returns) and dst is a plain number we want replaced.
            // dup2 clears FD_CLOEXEC on dst, which is what makes it survive exec.
            if unsafe { nix::libc::dup2(src, dst) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure only calls dup2 (async-signal-safe) on a pre-built plan; it does
    // not allocate, lock or touch any state shared with other threads of the parent.
    unsafe {
        cmd.pre_exec(closure);
    }
}

/// Removes a variable from this process's environment.
///
/// Called from [`crate::env::capture`], which documents that it must run before the process
/// starts threads that read the environment.
pub(crate) fn remove_env(key: impl AsRef<OsStr>) {
    // SAFETY: the caller runs this at start-up, before other threads exist (see
    // `tableflip_runtime::init`); no other thread reads or writes the environment
    // concurrently.
    unsafe { std::env::remove_var(key) }
}

/// Open descriptors numbered `min` or above without `FD_CLOEXEC`: what this process
/// inherited across exec and nothing in it has claimed. Linux only (elsewhere: none).
pub(crate) fn inherited_without_cloexec(min: RawFd) -> Vec<RawFd> {
    #[cfg(target_os = "linux")]
    {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return Vec::new();
        };
        let mut fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd >= min)
            // One F_GETFD tells both whether it is (still) open and whether it is marked.
            .filter(|&fd| {
                fcntl(fd, FcntlArg::F_GETFD).is_ok_and(|bits| {
                    !FdFlag::from_bits_truncate(bits).contains(FdFlag::FD_CLOEXEC)
                })
            })
            .collect();
        fds.sort_unstable();
        fds
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = min;
        Vec::new()
    }
}

/// Marks every inherited descriptor above stderr close-on-exec, so that nothing this
/// process inherited leaks into programs it starts.
pub(crate) fn cloexec_all_inherited() {
    for fd in inherited_without_cloexec(3) {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}

/// Closes a descriptor this process inherited by accident (nothing in it owns the number).
pub(crate) fn close_leaked(fd: RawFd) {
    if fd_is_open(fd) {
        // SAFETY: called at start-up on inherited descriptors that no code in this process
        // has claimed (numbers beyond the handshake's); taking ownership only to close it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// A pipe whose two ends are close-on-exec: `(read, write)`.
///
/// Atomic with `pipe2` where the system has it; elsewhere (macOS) the flag is set right after
/// `pipe`, which a `fork` in another thread could slip between.
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let (read, write) = nix::unistd::pipe()?;
        for fd in [&read, &write] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        }
        Ok((read, write))
    }
}
