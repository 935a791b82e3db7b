//! The one module with `unsafe`: taking ownership of inherited descriptors, placing
//! descriptors in a child between fork and exec, and scrubbing the environment.
//!
//! Everything else in the crate works with `OwnedFd`/`BorrowedFd` and safe wrappers.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

use crate::handshake::INHERITED_ONLY;

/// Is `fd` an open descriptor of this process?
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

/// Takes ownership of a descriptor this process inherited at a well-known number.
///
/// Returns `None` if no such descriptor is open. The descriptor is marked close-on-exec, so
/// that programs this process starts do not inherit it by accident.
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<Option<OwnedFd>> {
    // One call both marks it and tells whether it is open (FD_CLOEXEC is the only
    // descriptor flag): with many inherited listeners, every call per descriptor counts.
    match fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EBADF) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    // SAFETY: the fd is open (F_SETFD succeeded) and was inherited across exec: nothing else
    // in this process owns it. Callers take each inherited number once, at start-up, before
    // any other code could have claimed it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The access mode (`O_RDONLY`, `O_WRONLY` or `O_RDWR`) of an open descriptor.
pub(crate) fn access_mode(fd: BorrowedFd<'_>) -> io::Result<OFlag> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    Ok(flags & OFlag::O_ACCMODE)
}

/// The values `init_env` removed from the environment, kept for this process's own start-up.
static REMOVED: OnceLock<Vec<(&'static str, Option<OsString>)>> = OnceLock::new();

/// Removes the variables that describe what this process inherited
/// (`TABLEFLIP_HAS_PARENT_7DIU3`, `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) from its
/// environment, so that no program it starts, by any means, believes it was handed sockets.
/// Their values are kept for this process: [`init`](crate::init),
/// [`Upgrader::new`](crate::Upgrader::new) and [`Service::run`](crate::Service::run) still
/// see what was inherited. `#[tableflip::main]` calls it first thing in the `main` it
/// generates. Calling it again does nothing.
///
/// Without it, the variables stay in this process's environment, and only the processes an
/// upgrade starts are sure not to see them.
///
/// # Safety
///
/// Changing the environment is only sound while no other thread reads or writes it: call
/// this first thing in `main`, before any thread is started (in particular before a tokio
/// runtime is built), as [`std::env::remove_var`] requires.
pub unsafe fn init_env() {
    let saved = INHERITED_ONLY.map(|name| (name, std::env::var_os(name)));
    if REMOVED.set(saved.into()).is_err() {
        return;
    }
    for name in INHERITED_ONLY {
        // SAFETY: the caller guarantees that no other thread exists yet (this function's
        // own contract), so nothing reads or writes the environment concurrently.
        unsafe { std::env::remove_var(name) }
    }
}

/// One of the variables that describe what this process inherited: where [`init_env`] kept
/// it, or else from the environment.
pub(crate) fn inherited_var(name: &str) -> Option<OsString> {
    match REMOVED.get() {
        Some(saved) => saved.iter().find(|(n, _)| *n == name)?.1.clone(),
        None => std::env::var_os(name),
    }
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

// ---------------------------------------------------------------------------------------------
// Starting a successor through a shim (see `upgrade/child.rs` for why), and the process-level
// calls around it: pidfds, dying by a signal, the open-files limit.
// ---------------------------------------------------------------------------------------------

/// What the shim reports on its report pipe: one record of [`RECORD_LEN`] bytes, a tag and a
/// 32-bit value (native byte order: both ends are this program).
pub(crate) const RECORD_LEN: usize = 5;
/// The successor could not be executed; the value is the `errno` of `execve` (or `fork`).
pub(crate) const REC_EXEC_FAILED: u8 = b'E';
/// The successor runs; the value is its pid.
pub(crate) const REC_STARTED: u8 = b'P';
/// The successor exited and the shim reaped it; the value is the raw wait status.
pub(crate) const REC_EXITED: u8 = b'X';
/// Command to the shim: the parent holds what it needs to watch the successor; from now on
/// the shim may reap it when it exits.
pub(crate) const CMD_WATCH: u8 = b'w';
/// Command to the shim: kill the successor (and report its exit).
pub(crate) const CMD_KILL: u8 = b'k';
/// Command to the shim: exit now, leaving the successor to be re-parented.
pub(crate) const CMD_RELEASE: u8 = b'r';
/// Command to the shim: as [`CMD_RELEASE`], but exit at idle priority (`SCHED_IDLE`, Linux):
/// the teardown of the shim's copy of this process then takes no CPU from this process or
/// the successor, which serve meanwhile. Only when nobody waits for that exit: it can take
/// long on a saturated machine.
pub(crate) const CMD_RELEASE_IDLE: u8 = b'i';

/// Signals an operator sends to "the service" (`pkill`, `KillMode=control-group`): the shim
/// ignores them, so that it does its small job whatever it is sent.
const SHIM_IGNORES: [i32; 6] = [
    nix::libc::SIGHUP,
    nix::libc::SIGINT,
    nix::libc::SIGTERM,
    nix::libc::SIGQUIT,
    nix::libc::SIGUSR1,
    nix::libc::SIGUSR2,
];

/// Everything the shim and the successor need, prepared before `fork` (after it nothing may
/// allocate).
pub(crate) struct ShimPlan {
    program: std::ffi::CString,
    /// The directory to start in, if it still exists (else the current one is inherited).
    cwd: std::ffi::CString,
    _argv: Vec<std::ffi::CString>,
    argv_ptrs: Vec<*const nix::libc::c_char>,
    _envp: Vec<std::ffi::CString>,
    envp_ptrs: Vec<*const nix::libc::c_char>,
    /// `(source, target)`: the successor's descriptors, placed with `dup2`. A source may sit
    /// on another one's target: the successor first lifts such sources out of the way.
    places: Vec<(RawFd, RawFd)>,
    /// Where the successor lifts source `i` that sits at or below the highest target:
    /// `lift + i`, above every descriptor the shim keeps and every target (and the
    /// exec-error pipe, if it sits there, to `lift + places.len()`).
    lift: RawFd,
    /// The read end of the command pipe (the shim's).
    control: RawFd,
    /// The write end of the report pipe (the shim's).
    report: RawFd,
    /// The exec-error pipe: the successor writes `errno` there if `execve` fails.
    exec_err: (RawFd, RawFd),
    /// The highest signal number to reset.
    max_signal: i32,
    /// The stack the successor runs on between `clone` and `execve` (Linux), made before the
    /// fork: the shim may not allocate.
    #[cfg(target_os = "linux")]
    stack: std::cell::UnsafeCell<Vec<u8>>,
    /// The descriptors the shim keeps (sorted): 0-2 and the ones above. It closes every
    /// other one, so that it holds none of the parent's connections open.
    keep: Vec<RawFd>,
    /// The parent's descriptors when the plan was made (for systems without `close_range`).
    open: Vec<RawFd>,
}

/// What the successor runs: its program, directory, arguments (argv\[0\] first) and
/// environment.
pub(crate) struct Exec<'a> {
    pub(crate) program: &'a std::path::Path,
    pub(crate) cwd: &'a std::path::Path,
    pub(crate) args: &'a [std::ffi::OsString],
    pub(crate) env: &'a [(std::ffi::OsString, std::ffi::OsString)],
}

impl ShimPlan {
    /// A plan to start `exec`, with `fds[i]` at descriptor `first + i` (whatever their
    /// numbers now: one may sit on another's target), for a shim that reads commands on
    /// `control` and reports on `report`.
    ///
    /// No descriptor is copied here: a copy in this process (multi-threaded, with a shared
    /// descriptor table) can make the kernel grow the table, and growing a shared table waits
    /// for an RCU grace period, milliseconds. The successor, a single-threaded fork with a
    /// table of its own, moves what is in the way instead.
    pub(crate) fn new(
        exec: Exec<'_>,
        fds: &[BorrowedFd<'_>],
        first: RawFd,
        control: BorrowedFd<'_>,
        report: BorrowedFd<'_>,
        exec_err: (BorrowedFd<'_>, BorrowedFd<'_>),
    ) -> io::Result<ShimPlan> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let cstr = |b: &[u8]| {
            CString::new(b).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a NUL byte in an argument or variable",
                )
            })
        };
        let Exec {
            program,
            cwd,
            args,
            env,
        } = exec;
        let program = cstr(program.as_os_str().as_bytes())?;
        let cwd = cstr(cwd.as_os_str().as_bytes())?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| cstr(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstr(&kv)
            })
            .collect::<io::Result<_>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let places = fds
            .iter()
            .enumerate()
            .map(|(i, fd)| (fd.as_raw_fd(), first + i as RawFd))
            .collect::<Vec<_>>();
        #[cfg(target_os = "linux")]
        let max_signal = nix::libc::SIGRTMAX();
        #[cfg(not(target_os = "linux"))]
        let max_signal = 31;
        let mut keep: Vec<RawFd> = vec![0, 1, 2, control.as_raw_fd(), report.as_raw_fd()];
        keep.extend([exec_err.0.as_raw_fd(), exec_err.1.as_raw_fd()]);
        keep.extend(places.iter().map(|&(src, _)| src));
        keep.sort_unstable();
        keep.dedup();
        let highest_target = first + fds.len() as RawFd - 1;
        let lift = keep.last().copied().unwrap_or(0).max(highest_target) + 1;
        // Only where the shim can't close the rest with `close_range`: listing them costs a
        // read of `/proc/self/fd`, O(descriptors), at every upgrade.
        let open = if has_close_range() {
            Vec::new()
        } else {
            open_fds()
        };
        Ok(ShimPlan {
            keep,
            open,
            cwd,
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            program,
            _argv: argv,
            _envp: envp,
            places,
            lift,
            control: control.as_raw_fd(),
            report: report.as_raw_fd(),
            exec_err: (exec_err.0.as_raw_fd(), exec_err.1.as_raw_fd()),
            max_signal,
            #[cfg(target_os = "linux")]
            stack: std::cell::UnsafeCell::new(vec![0u8; SUCCESSOR_STACK]),
        })
    }
}

/// Forks the shim, which forks and executes the successor (see `upgrade/child.rs`). Returns
/// the shim's pid. Every descriptor the plan names must stay open until this returns.
///
/// It blocks for as long as the kernel takes to copy this process's page tables (a fraction
/// of a millisecond for a service of a few megabytes): it needs no thread of its own.
pub(crate) fn fork_shim(plan: &ShimPlan) -> io::Result<nix::unistd::Pid> {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    // Every signal blocked across the fork: the shim must not run this process's handlers
    // (tokio's would write into the pipe this process reads its signals from).
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    // SAFETY: after fork the child only runs `shim_main`, which makes async-signal-safe
    // system calls on data prepared before the fork, and never returns.
    let forked = unsafe { nix::unistd::fork() };
    if let Ok(nix::unistd::ForkResult::Child) = forked {
        shim_main(plan);
    }
    let restored = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    let pid = match forked? {
        nix::unistd::ForkResult::Parent { child } => child,
        nix::unistd::ForkResult::Child => unreachable!("the shim never returns"),
    };
    restored?;
    Ok(pid)
}

/// The shim: starts the successor, reports its pid, and stays its parent only while it
/// initialises. Runs in a forked copy of a multi-threaded process: async-signal-safe calls
/// only, no allocation, no locks.
fn shim_main(plan: &ShimPlan) -> ! {
    use nix::libc;
    // SAFETY (the whole function): raw system calls on descriptors and C strings prepared
    // before the fork; each of them is async-signal-safe. `_exit` never returns.
    unsafe {
        close_others(plan);
        let successor = start_successor(plan);
        libc::close(plan.exec_err.1);
        if successor < 0 {
            report(plan.report, REC_EXEC_FAILED, errno());
            libc::_exit(0);
        }
        // The successor's exec error, or end of file once its exec succeeded.
        let mut err = [0u8; 4];
        if read_full(plan.exec_err.0, &mut err) == 4 {
            let mut status = 0;
            libc::waitpid(successor, &mut status, 0);
            report(plan.report, REC_EXEC_FAILED, i32::from_ne_bytes(err));
            libc::_exit(0);
        }
        // Operators' signals are ignored; every other handler this process had is gone.
        for sig in 1..=plan.max_signal {
            let action = if SHIM_IGNORES.contains(&sig) {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                set_disposition(sig, action);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        report(plan.report, REC_STARTED, successor);
        // Until the parent holds its watch on the successor, do not reap it: its pid must
        // not be handed to another process meanwhile.
        loop {
            match read_command(plan.control) {
                Some(CMD_WATCH) => break,
                Some(CMD_KILL) => {
                    libc::kill(successor, libc::SIGKILL);
                    let mut status = 0;
                    libc::waitpid(successor, &mut status, 0);
                    report(plan.report, REC_EXITED, status);
                    libc::_exit(0);
                }
                Some(_) => continue,
                // Released, or the parent is gone: leave the successor to be re-parented.
                None => libc::_exit(0),
            }
        }
        #[cfg(target_os = "linux")]
        let pidfd = libc::syscall(libc::SYS_pidfd_open, successor, 0) as libc::c_int;
        #[cfg(not(target_os = "linux"))]
        let pidfd: libc::c_int = -1;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: plan.control,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Without a pidfd, look at the successor every 10 ms.
            let timeout = if pidfd >= 0 { -1 } else { 10 };
            libc::poll(fds.as_mut_ptr(), 2, timeout);
            let mut status = 0;
            if libc::waitpid(successor, &mut status, libc::WNOHANG) == successor {
                report(plan.report, REC_EXITED, status);
                libc::_exit(0);
            }
            if fds[0].revents != 0 {
                match read_command(plan.control) {
                    Some(CMD_KILL) => {
                        libc::kill(successor, libc::SIGKILL);
                    }
                    Some(CMD_WATCH) => {}
                    Some(CMD_RELEASE_IDLE) => {
                        #[cfg(target_os = "linux")]
                        {
                            let param = libc::sched_param { sched_priority: 0 };
                            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                        }
                        libc::_exit(0)
                    }
                    _ => libc::_exit(0),
                }
            }
        }
    }
}

/// The successor's stack between `clone` and `execve`: the handful of calls of
/// [`exec_successor`], far from the 64 KiB.
#[cfg(target_os = "linux")]
const SUCCESSOR_STACK: usize = 64 * 1024;

/// Starts the successor from the shim; its pid, or -1 (errno set).
///
/// On Linux it shares the shim's memory until it executes the program
/// (`CLONE_VM | CLONE_VFORK`, as glibc's `posix_spawn` does), on a stack of its own: no copy
/// of the page tables of a forked service, and none to tear down at `execve`, where a plain
/// `fork` made both. The shim is suspended until then. Elsewhere, `fork`.
///
/// # Safety
/// Only in the shim (a single-threaded fork, every signal blocked).
unsafe fn start_successor(plan: &ShimPlan) -> nix::libc::pid_t {
    use nix::libc;
    #[cfg(target_os = "linux")]
    {
        extern "C" fn run(arg: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `arg` is the plan `start_successor` passed, alive while the shim is
            // suspended; `exec_successor` never returns.
            unsafe { exec_successor(&*(arg as *const ShimPlan)) }
        }
        // SAFETY: the stack is the plan's own, used by nothing else (the shim waits while the
        // successor runs on it: CLONE_VFORK), and x86-64/aarch64 stacks grow down, from its
        // end, 16-byte aligned. The successor writes only its stack and async-signal-safe
        // calls' state before `execve`; every signal is blocked (the shim's mask) until it
        // resets them, so no handler of this process runs on shared memory.
        unsafe {
            let stack = &mut *plan.stack.get();
            let top = stack.as_mut_ptr().add(stack.len());
            let top = top.sub(top as usize % 16);
            libc::clone(
                run,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                plan as *const ShimPlan as *mut libc::c_void,
            )
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: the shim is single-threaded; the child only runs `exec_successor`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: a freshly forked child.
            unsafe { exec_successor(plan) }
        }
        pid
    }
}

/// Closes every descriptor but the plan's: `close_range` over the gaps where the system has
/// it, else the descriptors that were open when the plan was made.
///
/// # Safety
/// Only in a freshly forked child.
unsafe fn close_others(plan: &ShimPlan) {
    use nix::libc;
    #[cfg(target_os = "linux")]
    {
        let mut from: libc::c_uint = 0;
        let mut ok = true;
        for &k in &plan.keep {
            let k = k as libc::c_uint;
            if k > from {
                // SAFETY: close_range closes descriptors in [from, k - 1]; none is needed.
                ok &= unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0) } == 0;
            }
            from = k + 1;
        }
        // SAFETY: as above, everything above the last kept descriptor.
        ok &= unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) } == 0;
        if ok {
            return;
        }
    }
    for &fd in &plan.open {
        if plan.keep.binary_search(&fd).is_err() {
            // SAFETY: closing a descriptor of this forked copy, which nothing here uses.
            unsafe { libc::close(fd) };
        }
    }
}

/// Whether the kernel has `close_range` (Linux 5.9 and later), asked once.
fn has_close_range() -> bool {
    #[cfg(target_os = "linux")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            let none = nix::libc::c_uint::MAX;
            // SAFETY: closes the descriptors numbered from `c_uint::MAX` to `c_uint::MAX`:
            // none can exist (descriptor numbers are below `i32::MAX`), so nothing is closed;
            // the answer is 0 where the call exists, ENOSYS where it does not.
            unsafe { nix::libc::syscall(nix::libc::SYS_close_range, none, none, 0) == 0 }
        })
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The descriptors open in this process (where the system lists them).
fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"))
    else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// In the successor, between fork and exec: default signal handling, the descriptors in
/// place, exec. Never returns.
///
/// # Safety
/// Only in a freshly forked child (async-signal-safe calls only).
unsafe fn exec_successor(plan: &ShimPlan) -> ! {
    use nix::libc;
    // SAFETY: see the function's contract; every call is async-signal-safe.
    unsafe {
        for sig in 1..=plan.max_signal {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                set_disposition(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // The start-up directory; if it was deleted, the current one (as Go does).
        libc::chdir(plan.cwd.as_ptr());
        // A descriptor still needed that sits at or below the highest target could be
        // overwritten before it is used (a connection that closed left a low number free; a
        // pipe made for this upgrade took it): first lift every such one above everything
        // this process holds, as Go's forkExec does: source `i` to `lift + i`, the exec-error
        // pipe (which must report a failed `execve`, not a socket placed over it) to
        // `lift + places.len()`. Only this process's own copy of the table changes.
        let highest_target = plan.places.last().map_or(-1, |&(_, dst)| dst);
        let lifted = |i: usize, fd: RawFd| {
            if fd <= highest_target {
                plan.lift + i as RawFd
            } else {
                fd
            }
        };
        let needed = std::iter::once((plan.places.len(), plan.exec_err.1)).chain(
            plan.places
                .iter()
                .enumerate()
                .map(|(i, &(src, _))| (i, src)),
        );
        for (i, fd) in needed {
            let to = lifted(i, fd);
            // The lifted copy must not reach the program: close-on-exec. Nothing at or below
            // the highest target has been replaced yet: the pipe is still where it was.
            if to != fd && dup_cloexec_to(fd, to) == -1 {
                exec_failed(plan.exec_err.1);
            }
        }
        let err_fd = lifted(plan.places.len(), plan.exec_err.1);
        for (i, &(src, dst)) in plan.places.iter().enumerate() {
            // dup2 clears FD_CLOEXEC on dst, which is what makes it survive exec. Every
            // source is now above every target, so none is its own target.
            if libc::dup2(lifted(i, src), dst) == -1 {
                exec_failed(err_fd);
            }
        }
        libc::execve(
            plan.program.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        exec_failed(err_fd)
    }
}

/// `dup2(src, to)` with close-on-exec set on `to`; -1 on failure.
///
/// # Safety
/// Async-signal-safe; only in a freshly forked child (it replaces whatever `to` was).
unsafe fn dup_cloexec_to(src: RawFd, to: RawFd) -> i32 {
    use nix::libc;
    // SAFETY: see the function's contract; dup3, dup2 and fcntl are async-signal-safe.
    unsafe {
        #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "netbsd"))]
        {
            libc::dup3(src, to, libc::O_CLOEXEC)
        }
        #[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "netbsd")))]
        {
            if libc::dup2(src, to) == -1 {
                return -1;
            }
            libc::fcntl(to, libc::F_SETFD, libc::FD_CLOEXEC)
        }
    }
}

/// # Safety
/// Only in a freshly forked child.
unsafe fn exec_failed(err_fd: RawFd) -> ! {
    let err = errno().to_ne_bytes();
    // SAFETY: write and _exit are async-signal-safe; the fd is the exec-error pipe.
    unsafe {
        nix::libc::write(err_fd, err.as_ptr().cast(), err.len());
        nix::libc::_exit(127)
    }
}

fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// # Safety
/// Async-signal-safe; `action` is `SIG_DFL` or `SIG_IGN`.
unsafe fn set_disposition(sig: i32, action: nix::libc::sighandler_t) {
    use nix::libc;
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; sigaction is
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = action;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Reads until `buf` is full or end of file; returns how much was read.
///
/// # Safety
/// Async-signal-safe; `fd` is open.
unsafe fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled part of `buf`.
        let n = unsafe { nix::libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || errno() != nix::libc::EINTR {
            break;
        }
    }
    got
}

/// One command byte, or `None` at end of file (or an error).
///
/// # Safety
/// Async-signal-safe; `fd` is open.
unsafe fn read_command(fd: RawFd) -> Option<u8> {
    let mut b = [0u8; 1];
    // SAFETY: see the function's contract.
    (unsafe { read_full(fd, &mut b) } == 1).then_some(b[0])
}

/// # Safety
/// Async-signal-safe; `fd` is open.
unsafe fn report(fd: RawFd, tag: u8, value: i32) {
    let mut rec = [0u8; RECORD_LEN];
    rec[0] = tag;
    rec[1..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: a 5-byte write to a pipe is atomic; the fd is the report pipe.
    unsafe {
        nix::libc::write(fd, rec.as_ptr().cast(), rec.len());
    }
}

/// A pidfd for `pid` (Linux 5.3 and later). The caller makes sure the pid still names the
/// process it means (it is an unreaped child of a process that waits for the caller).
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns (pidfds are close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` through a pidfd: never to another process, even if the pid was reused.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_kill(pidfd: BorrowedFd<'_>, sig: nix::sys::signal::Signal) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes an open pidfd, a signal, a null siginfo and flags 0.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as i32,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps the process behind `pidfd` if it is this process's child and has exited (this
/// process may be the reaper it was re-parented to). Returns its raw wait status.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_reap(pidfd: BorrowedFd<'_>) -> Option<i32> {
    use nix::libc;
    // SAFETY: a zeroed siginfo_t is valid output space for waitid; P_PIDFD names the process
    // by its pidfd, so no other process can be reaped by mistake.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        const P_PIDFD: libc::idtype_t = 3;
        let r = libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        );
        if r != 0 || info.si_pid() == 0 {
            return None;
        }
        let status = info.si_status();
        Some(match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            _ => status & 0x7f,
        })
    }
}

/// Ends the process the way `sig` ends one that does not handle it (so that a supervisor
/// sees "killed by SIGTERM", which systemd counts as a clean stop). Never returns.
pub(crate) fn die_by(sig: nix::sys::signal::Signal) -> ! {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, pthread_sigmask};
    // SAFETY: restoring the default disposition is always sound (no handler is installed).
    let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = nix::sys::signal::raise(sig);
    // Not a terminating signal after all (the caller passed one that is): exit as a shell
    // reports it.
    std::process::exit(128 + sig as i32)
}

/// Fails with one clear error if fewer than `min` descriptors are free under the
/// open-files limit (`ulimit -n`): better than a failure deep inside the runtime later.
pub(crate) fn check_free_fds(min: u64) -> Result<(), crate::error::Error> {
    use nix::sys::resource::{Resource, getrlimit};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    // Ask the kernel for `min` descriptors: O(min), where listing the open ones costs
    // O(open), a thousand entries for a successor with a thousand listeners. Where there is
    // no descriptor to copy, fall back to the listing.
    let mut probes = Vec::with_capacity(min as usize);
    let short = loop {
        if probes.len() as u64 >= min {
            break false;
        }
        match io::stderr().as_fd().try_clone_to_owned() {
            Ok(fd) => probes.push(fd),
            Err(e) if e.raw_os_error() == Some(nix::libc::EMFILE) => break true,
            Err(_) => {
                break open_fd_count(soft).is_some_and(|open| soft.saturating_sub(open) < min);
            }
        }
    };
    drop(probes);
    if !short {
        return Ok(());
    }
    let open = open_fd_count(soft).unwrap_or(soft);
    Err(crate::error::Error::Config {
        what: "open files limit".into(),
        msg: format!(
            "too few file descriptors: the limit (ulimit -n) is {soft} and {open} are in \
             use; a service needs at least {min} free (raise it with `ulimit -n` or \
             LimitNOFILE=)"
        ),
    })
}

/// How many descriptors are open; `None` where they can't be listed. Listing takes one
/// itself: failing to for lack of descriptors is the answer too (all `soft` of them).
fn open_fd_count(soft: u64) -> Option<u64> {
    match std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd")) {
        Ok(dir) => Some(dir.count() as u64),
        Err(e) if e.raw_os_error() == Some(nix::libc::EMFILE) => Some(soft),
        Err(_) => None,
    }
}

/// Makes sure descriptors 0, 1 and 2 are open (on `/dev/null` if they were closed), so that
/// nothing this process opens later lands on them: log lines must never go to a socket.
pub(crate) fn ensure_std_fds() {
    for _ in 0..3 {
        if (0..3).all(fd_is_open) {
            return;
        }
        // The lowest free number is one of 0..3: the file lands there and stays open.
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(f) if f.as_raw_fd() <= 2 => std::mem::forget(f),
            _ => return,
        }
    }
}

/// Registers a pidfd with the tokio reactor, to wait until it turns readable (the process
/// exited). Must run inside a tokio runtime.
#[cfg(target_os = "linux")]
pub(crate) fn async_pidfd(pidfd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and names the same
    // pidfd until the AsyncFd (and with it the registration) is dropped.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

// ---------------------------------------------------------------------------------------------
// The PID 1 supervisor (supervisor.rs).
// ---------------------------------------------------------------------------------------------

/// Makes the child that `cmd` starts begin with no signal blocked.
///
/// The supervisor blocks the signals it forwards, to read them from a signalfd, and a signal
/// mask is inherited across fork and exec (std's spawn leaves it as it is): the service would
/// then never see its upgrade or stop signals.
#[cfg(target_os = "linux")]
pub(crate) fn unblock_signals_in_child(cmd: &mut std::process::Command) {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let empty = SigSet::empty();
    let closure = move || -> io::Result<()> {
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&empty), None).map_err(io::Error::from)
    };
    // SAFETY: the closure runs in the child between fork and exec. It calls only
    // pthread_sigmask, which is async-signal-safe, on a set built before the fork; it neither
    // allocates nor takes a lock nor touches state shared with the parent's other threads
    // (the supervisor has none).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, closure);
    }
}
