//! Hygiene: what a service leaves to others. Programs it starts inherit none of its sockets
//! or pipes and see no handshake or socket-activation variables, at every stage of an
//! upgrade; the pid file is replaced by rename and never follows a symlink; unix socket
//! files never outlive a stop.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// What a program started by the `spawner` example inherited.
#[derive(Debug)]
struct Inherited {
    /// Descriptor number -> what it points to.
    fds: BTreeMap<u32, String>,
    /// Variable names.
    env: Vec<String>,
}

/// Asks the spawner at `addr` for what its child inherited; returns it with the still open
/// connection (the spawner's drain waits until it is closed).
fn ask_holding(addr: SocketAddr) -> (Inherited, TcpStream) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("the spawner's answer");
    let mut fds = BTreeMap::new();
    let mut env = Vec::new();
    for line in out.lines() {
        if let Some((left, target)) = line.split_once(" -> ") {
            if let Some(fd) = left.split_whitespace().last().and_then(|n| n.parse().ok()) {
                fds.insert(fd, target.to_owned());
            }
        } else if let Some((name, _)) = line.split_once('=') {
            env.push(name.to_owned());
        }
    }
    assert!(
        fds.contains_key(&0) && env.iter().any(|v| v == "PATH"),
        "unexpected answer: {out}"
    );
    (Inherited { fds, env }, s)
}

fn ask(addr: SocketAddr) -> Inherited {
    ask_holding(addr).0
}

/// The child has stdin, the spawner's two capture pipes, `ls`'s own directory and nothing
/// else; no variable tells it that it was handed sockets.
fn assert_clean(stage: &str, got: &Inherited) {
    for (fd, target) in &got.fds {
        let expected = match fd {
            0 => target == "/dev/null",
            1 | 2 => target.starts_with("pipe:"),
            _ => target.starts_with("/proc/") && target.ends_with("/fd"),
        };
        assert!(
            expected,
            "{stage}: the child inherited fd {fd} -> {target}: {got:?}"
        );
    }
    assert!(got.fds.len() <= 4, "{stage}: {got:?}");
    for var in [
        "TABLEFLIP_HAS_PARENT_7DIU3",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        assert!(
            !got.env.iter().any(|v| v == var),
            "{stage}: the child sees {var}"
        );
    }
}

/// The inode of the listening TCP socket on loopback `port`.
fn listener_inode(port: u16) -> String {
    let hex = format!(":{port:04X}");
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    text.lines()
        .skip(1)
        .find_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.len() > 9 && c[1].ends_with(&hex) && c[3] == "0A").then(|| c[9].to_owned())
        })
        .expect("the listening socket")
}

fn holds_pipe_at(pid: i32, fd: u32) -> bool {
    fds_of(pid)
        .iter()
        .any(|f| f.starts_with(&format!("{fd}->pipe:")))
}

#[test]
fn programs_a_service_starts_inherit_nothing_at_any_stage_of_an_upgrade() {
    let scratch = Scratch::new("hygiene-spawn");
    let exe = scratch.path("app");
    install_file(&example("spawner"), &exe);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tag = unique_tag("hygiene");
    let _strays = KillTagged(tag.clone());
    // Socket-activation variables meant for another process: ignored, and scrubbed.
    let mut svc = Service::start(
        &exe,
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            (TAG_VAR, &tag),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDNAMES", "http"),
        ],
    );
    wait_until("the spawner answers", || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    });
    let gen1 = svc.first_pid();
    assert_clean("started cold", &ask(addr));

    // An upgrade in flight: the old process holds the handshake pipes meanwhile.
    let hang_pid = scratch.path("hang.pid");
    swap_script(
        &exe,
        &format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 600\n",
            hang_pid.display()
        ),
    );
    signal(gen1, Signal::SIGHUP);
    let mut hang = None;
    wait_until("the hanging successor", || {
        hang = std::fs::read_to_string(&hang_pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        hang.is_some()
    });
    let hang = hang.unwrap();
    svc.track(hang);
    assert!(
        fds_of(gen1)
            .iter()
            .filter(|f| f.contains("->pipe:"))
            .count()
            >= 2,
        "the upgrade's pipes are open: {:?}",
        fds_of(gen1)
    );
    assert_clean("old process, upgrade in flight", &ask(addr));
    signal(hang, Signal::SIGKILL);
    wait_until("the failed upgrade", || {
        svc.log_count("upgrade failed; still serving") == 1
    });
    svc.forget(hang);

    // A successor whose parent is still alive (draining a connection we hold open), so its
    // fd 4 is still the open names pipe.
    swap_binary(&exe, &example("spawner"));
    let (_, hold) = ask_holding(addr);
    signal(gen1, Signal::SIGHUP);
    let listening = listener_inode(addr.port());
    // The body's listener is closed; the runtime keeps its own copy of the socket until the
    // process exits (to replace a successor that crashes meanwhile), but never accepts on it.
    wait_until("the old process to stop accepting", || {
        svc.log_count("upgrade complete") == 1
            && fds_of(gen1)
                .iter()
                .filter(|f| f.ends_with(&format!("socket:[{listening}]")))
                .count()
                == 1
    });
    let gen2 = *log_fields(&svc.stderr(), "new process is ready", "child_pid")
        .first()
        .and_then(|p| p.parse::<i32>().ok())
        .as_ref()
        .expect("the successor's pid");
    svc.track(gen2);
    assert!(
        holds_pipe_at(gen2, 4),
        "the parent is alive: {:?}",
        fds_of(gen2)
    );
    assert_clean("successor, parent alive", &ask(addr));
    assert!(holds_pipe_at(gen2, 4), "the parent was alive throughout");
    drop(hold);
    assert_eq!(svc.wait_first_exit(), Some(0));

    // The successor on its own.
    wait_until("the names pipe to close", || !holds_pipe_at(gen2, 4));
    assert_clean("successor, parent gone", &ask(addr));
    signal(gen2, Signal::SIGTERM);
    assert_eq!(wait_reaped(gen2, WAIT), Some(0));
    svc.forget(gen2);
    assert_eq!(tagged_pids(&tag), Default::default(), "stray processes");
}

#[test]
fn descriptors_leaked_into_a_cold_start_do_not_reach_the_services_children() {
    use command_fds::{CommandFdExt, FdMapping};
    let scratch = Scratch::new("hygiene-leaked");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (sock, _peer) = UnixStream::pair().unwrap();
    let (pipe_r, _pipe_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // A careless parent: three descriptors without close-on-exec, including fds 3 and 4.
    let leaked: Vec<(i32, OwnedFd)> = vec![(3, sock.into()), (4, pipe_r), (9, tcp.into())];
    let mut cmd = Command::new(example("spawner"));
    cmd.env("ADDR", addr.to_string())
        .env("LISTEN_FDS", "2")
        .env("LISTEN_PID", "1")
        .current_dir(&scratch.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .fd_mappings(
            leaked
                .into_iter()
                .map(|(child_fd, parent_fd)| FdMapping {
                    parent_fd,
                    child_fd,
                })
                .collect(),
        )
        .unwrap();
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reaped(cmd.spawn().expect("spawn the spawner"));
    drop(cmd);
    wait_until("the spawner answers", || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    });
    let fds = fds_of(child.0.id() as i32);
    assert!(
        fds.iter().any(|f| f.starts_with("9->socket:")),
        "the service itself still has what it was given: {fds:?}"
    );
    assert_clean("leaked into a cold start", &ask(addr));
}

#[test]
fn the_pid_file_is_replaced_by_rename_and_never_follows_a_symlink() {
    let scratch = Scratch::new("hygiene-pidfile");
    let pid_file = scratch.path("app.pid");
    let victim = scratch.path("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, &pid_file).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut svc = Service::start(
        &example("hello"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_PID_FILE", pid_file.to_str().unwrap()),
        ],
    );
    let first = svc.first_pid();
    let names =
        |pid: i32| std::fs::read_to_string(&pid_file).is_ok_and(|p| p == format!("{pid}\n"));
    wait_until("the pid file", || names(first));
    let is_regular = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    assert!(is_regular(&pid_file), "the planted symlink was replaced");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");

    // Someone keeps a hard link to the current pid file, and a reader polls the path
    // throughout the upgrade: it always finds a whole pid, never a missing or partial file.
    let linked = scratch.path("linked");
    std::fs::hard_link(&pid_file, &linked).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, pid_file) = (stop.clone(), pid_file.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut reads, mut torn) = (0usize, Vec::new());
            for _ in 0..10_000_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                match std::fs::read_to_string(&pid_file) {
                    Ok(s) if s.ends_with('\n') && s.trim().parse::<i32>().is_ok() => {}
                    other => torn.push(format!("{other:?}")),
                }
                reads += 1;
            }
            (reads, torn)
        })
    };
    signal(first, Signal::SIGHUP);
    let second = wait_new_pid(addr, first);
    svc.track(second);
    assert_eq!(svc.wait_first_exit(), Some(0));
    wait_until("the pid file names the new process", || names(second));
    stop.store(true, Ordering::Relaxed);
    let (reads, torn) = reader.join().unwrap();
    assert!(reads > 0 && torn.is_empty(), "the reader saw {torn:?}");
    assert_eq!(
        std::fs::read_to_string(&linked).unwrap(),
        format!("{first}\n"),
        "the old file was replaced by another, not rewritten in place"
    );

    // A dangling symlink planted at the path: replaced, and nothing created through it.
    let planted_target = scratch.path("created-through-a-symlink");
    std::fs::remove_file(&pid_file).unwrap();
    std::os::unix::fs::symlink(&planted_target, &pid_file).unwrap();
    signal(second, Signal::SIGHUP);
    let third = wait_new_pid(addr, second);
    svc.track(third);
    assert_eq!(wait_reaped(second, WAIT), Some(0));
    svc.forget(second);
    wait_until("the pid file names the third process", || names(third));
    assert!(is_regular(&pid_file), "the planted symlink was replaced");
    assert!(
        !planted_target.exists(),
        "nothing was written through the symlink"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    let leftovers: Vec<String> = std::fs::read_dir(&scratch.0)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn unix_socket_files_never_outlive_a_stop() {
    for case in [
        "SIGTERM",
        "SIGINT",
        "SIGTERM after three upgrades",
        "SIGTERM after a failed upgrade",
        "SIGTERM during an upgrade",
    ] {
        let scratch = Scratch::new("hygiene-unix");
        let exe = scratch.path("app");
        install_file(&example("unix"), &exe);
        let sock = scratch.path("app.sock");
        let tag = unique_tag("unix");
        let _strays = KillTagged(tag.clone());
        let mut svc = Service::start(
            &exe,
            &scratch,
            &[("SOCKET", sock.to_str().unwrap()), (TAG_VAR, &tag)],
        );
        let ask = || -> std::io::Result<i32> {
            let mut s = UnixStream::connect(&sock)?;
            s.set_read_timeout(Some(WAIT))?;
            let line = read_all(&mut s);
            parse_pid(&line).ok_or_else(|| std::io::Error::other(line))
        };
        wait_until("unix answers", || ask().is_ok());
        let mut pid = svc.first_pid();
        let mut stop = Signal::SIGTERM;
        match case {
            "SIGINT" => stop = Signal::SIGINT,
            "SIGTERM after three upgrades" => {
                for n in 0..3 {
                    signal(pid, Signal::SIGHUP);
                    let mut new = pid;
                    wait_until("a new pid", || {
                        new = ask().unwrap_or(pid);
                        new != pid
                    });
                    svc.track(new);
                    let code = if n == 0 {
                        svc.wait_first_exit()
                    } else {
                        wait_reaped(pid, WAIT)
                    };
                    assert_eq!(code, Some(0), "{case}");
                    svc.forget(pid);
                    assert!(sock.exists(), "{case}: the file stays across upgrades");
                    pid = new;
                }
            }
            "SIGTERM after a failed upgrade" => {
                swap_script(&exe, "#!/bin/sh\nexit 1\n");
                signal(pid, Signal::SIGHUP);
                wait_until("the failed upgrade", || {
                    svc.log_count("upgrade failed; still serving") == 1
                });
                assert!(sock.exists(), "{case}: the file stays");
            }
            "SIGTERM during an upgrade" => {
                swap_script(&exe, "#!/bin/sh\nexec sleep 600\n");
                signal(pid, Signal::SIGHUP);
                wait_until("the successor to start", || {
                    svc.log_count("started new process") == 1
                });
            }
            _ => {}
        }
        signal(pid, stop);
        let code = if pid == svc.first_pid() {
            svc.wait_first_exit()
        } else {
            wait_reaped(pid, WAIT)
        };
        assert_eq!(code, Some(0), "{case}: exit code\n{}", svc.stderr());
        svc.forget(pid);
        assert!(!sock.exists(), "{case}: the socket file was left behind");
        wait_until("no process of the service", || tagged_pids(&tag).is_empty());
    }
}
