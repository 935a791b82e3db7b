//! What the process was started with: arguments, working directory, the tableflip handshake
//! and (for systemd) activated sockets. Read once, early; the environment is only read here
//! (`sys::init_env` is the one place that changes it).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::Error;
use crate::handshake::{INHERITED_ONLY, LISTEN_VARS, SENTINEL};
use crate::parent::{self, Handoff};
use crate::{sys, systemd};

/// Is `name` one of [`INHERITED_ONLY`]?
pub(crate) fn is_inherited_only(name: &OsStr) -> bool {
    INHERITED_ONLY.iter().any(|v| OsStr::new(v) == name)
}

/// What this process was started with.
pub(crate) struct Startup {
    /// The working directory at start-up: the child starts there, relative paths resolve there.
    pub(crate) cwd: PathBuf,
    /// argv\[0\] as given.
    pub(crate) argv0: OsString,
    /// argv\[1..\].
    pub(crate) args: Vec<OsString>,
    /// The handshake with a tableflip parent, if one started us; taken by the first Upgrader.
    pub(crate) handoff: Mutex<Option<Result<Handoff, Error>>>,
    /// The socket-activation variables as they were (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
    #[allow(dead_code)] // kept for diagnostics; `activation` holds what they meant
    pub(crate) listen_vars: [Option<String>; 3],
    /// The sockets systemd passed, if it activated this process; taken by the first Upgrader.
    pub(crate) activation: Mutex<Option<systemd::Activation>>,
}

static STARTUP: OnceLock<Startup> = OnceLock::new();

/// Reads what the process inherited: the tableflip handshake (fds 3, 4 and 5+i) and
/// systemd's socket-activation sockets. It does not change the environment: the variables
/// that describe the inheritance stay in this process's environment (use [`init_env`]
/// before any thread exists to remove them too), and are never passed to the processes an
/// upgrade starts.
///
/// Call it early in `main`, before other code could open descriptors of its own;
/// [`Upgrader::new`](crate::Upgrader::new) and [`Service::run`](crate::Service::run) call
/// it if you did not. Calling it again does nothing.
///
/// In a process that is PID 1 (a container without an init), it first becomes a small
/// supervisor and does not return: it starts the program again as its child, follows the
/// upgrades, forwards signals, reaps orphans, and exits with the last generation's status, so
/// that an upgrade does not end the container. `TABLEFLIP_SUPERVISOR=0` opts out. The README's
/// "Containers" section has the details.
///
/// [`init_env`]: crate::init_env
pub fn init() {
    crate::supervisor::supervise_if_pid1();
    startup();
}

pub(crate) fn startup() -> &'static Startup {
    STARTUP.get_or_init(capture)
}

fn capture() -> Startup {
    sys::ensure_std_fds();
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let args: Vec<OsString> = args.collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));

    // Read where `init_env` kept them if it removed them from the environment.
    let has_parent = sys::inherited_var(SENTINEL).is_some_and(|v| !v.is_empty());
    let listen_vars =
        LISTEN_VARS.map(|name| sys::inherited_var(name).and_then(|v| v.into_string().ok()));

    // systemd's sockets start at fd 3, where a tableflip parent puts its pipes: only a
    // process started cold can have been activated.
    let activation = if has_parent {
        systemd::Activation::default()
    } else {
        systemd::take_activated(&listen_vars)
    };
    let handoff = has_parent.then(parent::receive);
    // Whatever else was inherited must not leak into programs this service starts. A
    // handshake that succeeded has already seen to it: it took every named descriptor
    // (close-on-exec) and closed the unnamed ones, so the listing is not made twice.
    if !matches!(handoff, Some(Ok(_))) {
        sys::cloexec_all_inherited();
    }
    Startup {
        cwd,
        argv0,
        args,
        handoff: Mutex::new(handoff),
        listen_vars,
        activation: Mutex::new(Some(activation)),
    }
}

impl Startup {
    /// The program to start at an upgrade: argv\[0\] resolved against the start-up directory
    /// if it names a path, else looked up in `PATH` now (so a replaced binary is found).
    pub(crate) fn program(&self) -> Result<PathBuf, std::io::Error> {
        resolve_program(&self.argv0, &self.cwd, std::env::var_os("PATH").as_deref())
    }

    /// Resolves `path` against the start-up directory.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        self.cwd.join(path)
    }
}

fn resolve_program(
    argv0: &OsStr,
    cwd: &Path,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    if argv0.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "argv[0] is empty: can't tell which program to start",
        ));
    }
    if argv0.as_bytes().contains(&b'/') {
        return Ok(cwd.join(argv0));
    }
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = cwd.join(dir).join(argv0);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} not found in PATH", argv0.to_string_lossy()),
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_with_a_slash_resolves_against_the_startup_directory() {
        let p = resolve_program(OsStr::new("./bin/app"), Path::new("/srv"), None).unwrap();
        assert_eq!(p, Path::new("/srv/./bin/app"));
        let p = resolve_program(OsStr::new("/usr/bin/app"), Path::new("/srv"), None).unwrap();
        assert_eq!(p, Path::new("/usr/bin/app"));
    }

    #[test]
    fn bare_argv0_is_looked_up_in_path() {
        let p = resolve_program(
            OsStr::new("sh"),
            Path::new("/"),
            Some(OsStr::new("/nope:/bin")),
        )
        .unwrap();
        assert_eq!(p, Path::new("/bin/sh"));
        assert!(
            resolve_program(
                OsStr::new("no-such-prog-x"),
                Path::new("/"),
                Some(OsStr::new("/bin"))
            )
            .is_err()
        );
        assert!(resolve_program(OsStr::new(""), Path::new("/"), None).is_err());
    }
}
