//! End-to-end tests of the upgrader with real processes: this binary re-executes itself as
//! every generation (as Go tableflip's upgrader_test.go does). With `TF_SCENARIO` set it
//! plays a role (see `roles.rs`); otherwise it is the test runner (libtest-compatible, so
//! `cargo test` and `cargo nextest` both run it).

mod harness;
mod roles;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Duration;

use harness::{Event, Run, exists, is_gone, is_zombie, wait_gone};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> ExitCode {
    if let Ok(scenario) = std::env::var("TF_SCENARIO") {
        return roles::run(&scenario);
    }
    // Orphaned generations come back to us, so that we can reap them (DESIGN.md section 9).
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let args = Arguments::from_args();
    let trials = vec![
        trial("upgrade_before_ready_fails", upgrade_before_ready_fails),
        trial(
            "every_network_listener_conn_and_file_arrive_and_work",
            every_network_arrives,
        ),
        trial(
            "child_exiting_cleanly_before_ready_fails_the_upgrade",
            child_exit_clean,
        ),
        trial(
            "child_exiting_with_error_before_ready_fails_the_upgrade",
            child_exit_error,
        ),
        trial("timeout_kills_and_reaps_the_child", timeout_kills_and_reaps),
        trial("listen_hook_runs_before_bind", listen_hook_runs_before_bind),
        trial(
            "concurrent_upgrade_is_refused",
            concurrent_upgrade_is_refused,
        ),
        trial(
            "wait_for_parent_blocks_until_the_parent_exits",
            wait_for_parent,
        ),
        trial(
            "stop_cancels_an_upgrade_in_flight_and_refuses_later_ones",
            stop_cancels,
        ),
        trial(
            "pid_file_bare_name_resolves_against_the_startup_directory",
            pid_file,
        ),
        trial("nonblocking_state_survives_the_handover", nonblocking_state),
        trial(
            "unix_socket_files_are_unlinked_by_the_rules",
            unix_unlink_rules,
        ),
        trial(
            "child_whose_parent_dies_during_init_becomes_the_service",
            parent_dies_during_init,
        ),
        trial(
            "played_go_parent_hands_over_the_mixed_vector",
            go_parent_mixed_vector,
        ),
        trial(
            "garbage_names_from_a_parent_is_one_error_line",
            go_parent_garbage,
        ),
        trial(
            "sentinel_without_fds_is_one_error_line",
            sentinel_without_fds,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial(name: &'static str, f: fn() -> Result<(), String>) -> Trial {
    Trial::test(name, move || f().map_err(Failed::from))
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

fn upgrade_result(run: &Run) -> Event {
    run.wait_event("upgrade")
}

fn upgrade_before_ready_fails() -> Result<(), String> {
    let run = Run::start("not_ready", &[]);
    let e = upgrade_result(&run);
    check(e.field("result") == "NotReady", || format!("{e:?}"))
}

fn every_network_arrives() -> Result<(), String> {
    let tag = format!("{}-{}", std::process::id(), line!());
    let run = Run::start("networks", &[("TF_TAG", &tag)]);
    let parent = run.first_pid();
    let up = upgrade_result(&run);
    check(up.field("result") == "Ok", || {
        format!("upgrade failed: {up:?}")
    })?;
    let exit = run.wait_for("exit", |e| e.name == "exit" && e.pid == parent);
    check(exit.field("reason") == "Upgraded", || format!("{exit:?}"))?;
    run.wait_event_not_from("serving", parent);
    let events = run.events();
    let start = events
        .iter()
        .find(|e| e.name == "start" && e.pid != parent)
        .ok_or("no child start")?;
    check(start.field("has_parent") == "true", || {
        "child has_parent".into()
    })?;
    let parent_start = events
        .iter()
        .find(|e| e.name == "start" && e.pid == parent)
        .unwrap();
    check(parent_start.field("has_parent") == "false", || {
        "parent has_parent".into()
    })?;
    let sent: Vec<&Event> = events
        .iter()
        .filter(|e| e.name == "fd" && e.pid == parent)
        .collect();
    let got: Vec<&Event> = events
        .iter()
        .filter(|e| e.name == "fd" && e.pid != parent)
        .collect();
    check(sent.len() >= 11 && sent.len() == got.len(), || {
        format!("sent {sent:?}\ngot {got:?}")
    })?;
    for s in &sent {
        let g = got
            .iter()
            .find(|g| g.field("key") == s.field("key"))
            .ok_or_else(|| format!("child lacks {s:?}"))?;
        check(g.field("inode") == s.field("inode"), || {
            format!("same socket expected: {s:?} vs {g:?}")
        })?;
    }
    let state = got.iter().find(|g| g.field("key") == "fd:state:").unwrap();
    check(state.field("content") == "state from the parent", || {
        format!("{state:?}")
    })?;
    // Every socket works in the child.
    let child_pid = start.pid;
    for g in &got {
        let key = g.field("key");
        let local = g.get("local").unwrap_or_default().to_owned();
        let answer = match key.split(':').take(2).collect::<Vec<_>>()[..] {
            ["listener", "tcp" | "tcp4" | "tcp6"] => {
                let mut s =
                    std::net::TcpStream::connect(&local).map_err(|e| format!("{key}: {e}"))?;
                read_line(&mut s)
            }
            ["listener", "unix"] => {
                let mut s = connect_unix(&local, nix::sys::socket::SockType::Stream)?;
                read_line(&mut s)
            }
            ["listener", "unixpacket"] => {
                let mut s = connect_unix(&local, nix::sys::socket::SockType::SeqPacket)?;
                read_line(&mut s)
            }
            ["packet", "udp" | "udp4" | "udp6"] => {
                let bind = if local.starts_with('[') {
                    "[::1]:0"
                } else {
                    "127.0.0.1:0"
                };
                let s = std::net::UdpSocket::bind(bind).unwrap();
                s.set_read_timeout(Some(harness::WAIT)).unwrap();
                s.send_to(b"ping", &local).map_err(|e| e.to_string())?;
                let mut buf = [0u8; 256];
                let n = s.recv(&mut buf).map_err(|e| format!("{key}: {e}"))?;
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            ["packet", "unixgram"] => unixgram_ping(&run, &local)?,
            _ => continue,
        };
        check(answer.contains(&child_pid.to_string()), || {
            format!("{key} answered {answer:?}, expected the child {child_pid}")
        })?;
    }
    check(wait_gone(parent), || {
        "the parent did not exit after the upgrade".into()
    })
}

fn read_line(s: &mut impl Read) -> String {
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

fn connect_unix(local: &str, ty: nix::sys::socket::SockType) -> Result<std::fs::File, String> {
    use nix::sys::socket::{AddressFamily, SockFlag, UnixAddr, connect, socket};
    let fd =
        socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|e| e.to_string())?;
    let addr = match local.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes()),
        None => UnixAddr::new(local),
    }
    .map_err(|e| e.to_string())?;
    connect(fd.as_raw_fd(), &addr).map_err(|e| format!("connect {local}: {e}"))?;
    Ok(std::fs::File::from(fd))
}

fn unixgram_ping(run: &Run, local: &str) -> Result<String, String> {
    let me = run.dir.join(format!(
        "client-{}.sock",
        local.len() + local.chars().filter(|c| *c == '@').count()
    ));
    let _ = std::fs::remove_file(&me);
    let s = std::os::unix::net::UnixDatagram::bind(&me).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(harness::WAIT)).unwrap();
    match local.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            s.send_to_addr(b"ping", &addr).map_err(|e| e.to_string())?;
        }
        None => {
            s.send_to(b"ping", local).map_err(|e| e.to_string())?;
        }
    }
    let mut buf = [0u8; 256];
    let n = s
        .recv(&mut buf)
        .map_err(|e| format!("unixgram {local}: {e}"))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn child_exit_clean() -> Result<(), String> {
    let run = Run::start("child_exit_clean", &[]);
    let e = upgrade_result(&run);
    check(
        e.field("result") == "ChildExited" && e.field("msg").contains("exit status: 0"),
        || format!("{e:?}"),
    )
}

fn child_exit_error() -> Result<(), String> {
    let run = Run::start("child_exit_error", &[]);
    let e = upgrade_result(&run);
    check(
        e.field("result") == "ChildExited" && e.field("msg").contains("exit status: 3"),
        || format!("{e:?}"),
    )
}

fn timeout_kills_and_reaps() -> Result<(), String> {
    let run = Run::start("timeout", &[("TF_TIMEOUT_MS", "300")]);
    let parent = run.first_pid();
    let child = run.wait_event_not_from("start", parent).pid;
    let e = upgrade_result(&run);
    check(e.field("result") == "TimedOut", || format!("{e:?}"))?;
    // The parent (still alive) killed and reaped it: no zombie, no process.
    check(is_gone(child) && !is_zombie(child), || {
        format!("child {child} still exists after the timeout")
    })?;
    check(!is_gone(parent), || "the parent must keep running".into())
}

fn listen_hook_runs_before_bind() -> Result<(), String> {
    let run = Run::start("hook", &[]);
    let hook = run.wait_event("hook");
    check(
        hook.field("network") == "tcp" && hook.field("addr") == "127.0.0.1:0",
        || format!("{hook:?}"),
    )?;
    check(hook.field("port_before_bind") == "0", || {
        format!("hook ran after bind: {hook:?}")
    })?;
    let l = run.wait_event("listening");
    let rcvbuf: usize = l.field("rcvbuf").parse().unwrap();
    check(rcvbuf >= 200_000, || {
        format!("the hook's SO_RCVBUF was not applied: {l:?}")
    })
}

fn concurrent_upgrade_is_refused() -> Result<(), String> {
    let run = Run::start("concurrent", &[]);
    let second = run.wait_event("second");
    check(second.field("result") == "InProgress", || {
        format!("{second:?}")
    })?;
    let first = upgrade_result(&run);
    check(first.field("result") == "Ok", || format!("{first:?}"))
}

fn wait_for_parent() -> Result<(), String> {
    let run = Run::start("wait_for_parent", &[]);
    let parent = run.first_pid();
    let up = upgrade_result(&run);
    check(up.field("result") == "Ok", || format!("{up:?}"))?;
    run.wait_event_not_from("waiting", parent);
    std::thread::sleep(Duration::from_millis(300));
    check(
        !run.events().iter().any(|e| e.name == "parent_gone"),
        || "wait_for_parent returned while the parent lived".into(),
    )?;
    check(!is_gone(parent), || "parent exited early".into())?;
    run.touch("release");
    let gone = run.wait_event("parent_gone");
    check(gone.field("result") == "Ok(())", || format!("{gone:?}"))?;
    check(wait_gone(parent), || "parent still there".into())
}

fn stop_cancels() -> Result<(), String> {
    let run = Run::start("stop_cancels", &[]);
    let parent = run.first_pid();
    let child = run.wait_event_not_from("start", parent).pid;
    let _ = std::fs::write(run.dir.join("child-started"), "");
    let first = upgrade_result(&run);
    check(first.field("result") == "Terminating", || {
        format!("{first:?}")
    })?;
    let again = run.wait_event("again");
    check(again.field("result") == "Terminating", || {
        format!("{again:?}")
    })?;
    let exit = run.wait_event("exit");
    check(exit.field("reason") == "Stopped", || format!("{exit:?}"))?;
    check(is_gone(child) && !is_zombie(child), || {
        format!("child {child} survived the stop")
    })
}

fn pid_file() -> Result<(), String> {
    // The generations run with `/` as their current directory: a pid file resolved against
    // it would land in `/test.pid` (which something else on the machine may have left).
    let stray = || std::fs::read_to_string("/test.pid").ok();
    let stray_before = stray();
    let run = Run::start("pid_file", &[("TF_PID_FILE", "test.pid")]);
    let parent = run.first_pid();
    run.wait_for("parent ready", |e| e.name == "ready" && e.pid == parent);
    let read = || std::fs::read_to_string(run.dir.join("test.pid")).unwrap_or_default();
    check(read().trim() == parent.to_string(), || {
        format!("pid file holds {:?}", read())
    })?;
    check(stray() == stray_before, || {
        "pid file written relative to the current directory".into()
    })?;
    run.touch("upgrade-now");
    let up = upgrade_result(&run);
    check(up.field("result") == "Ok", || format!("{up:?}"))?;
    let child = run.wait_event_not_from("ready", parent).pid;
    check(read().trim() == child.to_string(), || {
        format!("pid file holds {:?}, expected {child}", read())
    })?;
    run.touch("release");
    Ok(())
}

fn nonblocking_state() -> Result<(), String> {
    let run = Run::start("nonblocking", &[]);
    let f = run.wait_event("flags");
    let want = [
        ("tcp", "true"),
        ("udp", "false"),
        ("pipe_nb", "true"),
        ("pipe_b", "false"),
    ];
    for (k, v) in want {
        check(f.field(k) == v, || {
            format!("{k}: expected O_NONBLOCK={v}: {f:?}")
        })?;
    }
    Ok(())
}

fn unix_unlink_rules() -> Result<(), String> {
    let run = Run::start("unix_unlink", &[]);
    let parent = run.first_pid();
    let (a, b, g) = (
        run.dir.join("a.sock"),
        run.dir.join("b.sock"),
        run.dir.join("g.sock"),
    );
    let up = upgrade_result(&run);
    check(up.field("result") == "Ok", || format!("{up:?}"))?;
    run.wait_event_not_from("ready", parent);
    // Unclaimed inherited sockets are unlinked at the child's ready; the claimed one stays.
    check(exists(&a) && !exists(&b) && !exists(&g), || {
        format!(
            "after ready: a={} b={} g={}",
            exists(&a),
            exists(&b),
            exists(&g)
        )
    })?;
    // The old process exiting after an upgrade leaves the socket to its successor.
    run.touch("release-parent");
    check(wait_gone(parent), || "parent did not exit".into())?;
    check(exists(&a), || {
        "the old process removed the socket its successor serves".into()
    })?;
    // A stop without an upgrade removes the socket file.
    run.touch("stop-child");
    run.wait_event("stopped");
    check(!exists(&a), || "a.sock left behind after stop".into())
}

fn parent_dies_during_init() -> Result<(), String> {
    let run = Run::start("parent_dies", &[]);
    let parent = run.first_pid();
    let addr = run.wait_event("listening").field("addr");
    run.wait_event_not_from("initialising", parent);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    check(wait_gone(parent), || "parent survived SIGKILL".into())?;
    run.touch("parent-killed");
    let ready = run.wait_event_not_from("ready", parent);
    check(ready.field("result") == "Ok(())", || format!("{ready:?}"))?;
    let mut s = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())?;
    let line = read_line(&mut s);
    check(line.contains(&ready.pid.to_string()), || {
        format!("answered {line:?}")
    })
}

/// Plays a Go tableflip parent: real pipes on fds 3 and 4, real sockets on fds 5+i, and the
/// bytes Go's encoder writes for the `mixed` vector.
fn go_parent(
    run: &mut Run,
    names_hex: &str,
    files: Vec<OwnedFd>,
) -> Result<(std::fs::File, std::fs::File), String> {
    use command_fds::{CommandFdExt, FdMapping};
    // Close-on-exec: other tests spawn processes concurrently and must not inherit these.
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string());
    let (ready_r, ready_w) = pipe()?;
    let (names_r, names_w) = pipe()?;
    let mut mappings = vec![
        FdMapping {
            parent_fd: ready_w,
            child_fd: 3,
        },
        FdMapping {
            parent_fd: names_r,
            child_fd: 4,
        },
    ];
    for (i, fd) in files.into_iter().enumerate() {
        mappings.push(FdMapping {
            parent_fd: fd,
            child_fd: 5 + i as i32,
        });
    }
    let mut cmd = run.command("go_child");
    cmd.env(tableflip_runtime::__private::SENTINEL, "yes");
    cmd.fd_mappings(mappings).map_err(|e| e.to_string())?;
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    drop(cmd);
    run.adopt(child);
    let mut names = std::fs::File::from(names_w);
    names
        .write_all(&hex(names_hex))
        .map_err(|e| e.to_string())?;
    Ok((std::fs::File::from(ready_r), names))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vector(name: &str) -> String {
    let tsv = include_str!("../vectors/go-tableflip-names.tsv");
    tsv.lines()
        .find(|l| l.split('\t').next() == Some(name))
        .and_then(|l| l.split('\t').nth(2))
        .unwrap_or_else(|| panic!("no vector {name}"))
        .to_owned()
}

fn go_parent_mixed_vector() -> Result<(), String> {
    let mut run = Run::prepare("go_parent");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let unix = std::os::unix::net::UnixListener::bind(run.dir.join("app.sock")).unwrap();
    let (conn, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let state = std::fs::File::create(run.dir.join("state")).unwrap();
    let inodes: Vec<u64> = [
        tcp.as_fd(),
        udp.as_fd(),
        unix.as_fd(),
        conn.as_fd(),
        state.as_fd(),
    ]
    .iter()
    .map(|fd| nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_ino)
    .collect();
    let files: Vec<OwnedFd> = vec![
        tcp.into(),
        udp.into(),
        unix.into(),
        conn.into(),
        state.into(),
    ];
    let (mut ready, names) = go_parent(&mut run, &vector("mixed"), files)?;
    let _ = &mut ready;
    let claimed = run.wait_event("claimed");
    for (k, ino) in ["tcp", "udp", "unix", "conn", "state"].iter().zip(&inodes) {
        check(claimed.field(k) == ino.to_string(), || {
            format!("{k}: {claimed:?} vs {inodes:?}")
        })?;
    }
    // The ready byte. Go's parent reads exactly one byte and then closes its end (the Rust
    // child keeps fd 3 open after it, to say "stopping" to a Rust parent later: see
    // docs/protocol.md); it must not care what follows.
    let mut buf = [0u8; 1];
    ready.read_exact(&mut buf).map_err(|e| e.to_string())?;
    check(buf == [42], || format!("ready pipe carried {buf:?}"))?;
    drop(ready);
    run.wait_event("ready");
    std::thread::sleep(Duration::from_millis(100));
    check(
        !run.events().iter().any(|e| e.name == "parent_gone"),
        || "parent_gone before the parent closed fd 4".into(),
    )?;
    drop(names);
    let gone = run.wait_event("parent_gone");
    check(gone.field("result") == "Ok(())", || format!("{gone:?}"))?;
    check(run.wait_first_exit() == Some(0), || {
        "child exit code".into()
    })?;
    let _ = std::fs::metadata(&run.dir).map(|m| m.ino());
    Ok(())
}

fn go_parent_garbage() -> Result<(), String> {
    let mut run = Run::prepare("go_garbage");
    let (_ready, names) = go_parent(&mut run, "0dff83020102ff8400deadbeef", vec![])?;
    drop(names);
    let code = run.wait_first_exit();
    check(code == Some(1), || format!("exit code {code:?}"))?;
    let err = run.wait_event("error");
    check(err.field("msg").contains("can't decode the names"), || {
        format!("{err:?}")
    })
}

fn sentinel_without_fds() -> Result<(), String> {
    let mut run = Run::prepare("no_fds");
    let mut cmd = run.command("go_child");
    cmd.env(tableflip_runtime::__private::SENTINEL, "yes");
    run.adopt(cmd.spawn().map_err(|e| e.to_string())?);
    let code = run.wait_first_exit();
    check(code == Some(1), || format!("exit code {code:?}"))?;
    let err = run.wait_event("error");
    check(err.field("msg").contains("fd 3"), || format!("{err:?}"))
}
