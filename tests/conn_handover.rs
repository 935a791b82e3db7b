//! Established connections handed over at upgrades (Go tableflip's `AddConn`/`Conn`): the
//! `line_session` example keeps its clients' TCP connections across upgrades, and a line
//! typed half before and half after an upgrade is answered whole.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// These tests share the subreaper and the machine's two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One TCP connection to a line service, kept for the whole test.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let writer = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        writer
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone the stream"));
        Client { writer, reader }
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("send");
    }

    /// The next answer line, without its newline ("" at end of file).
    fn answer(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read an answer");
        line.trim_end_matches('\n').to_owned()
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(&format!("{line}\n"));
        self.answer()
    }
}

/// The inode of the server's end of the TCP connection from `client` to `server`, from
/// /proc/net/tcp: the kernel's own record of which socket a process holds.
fn server_socket_inode(server: SocketAddr, client: SocketAddr) -> Option<String> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(1) == Some(&local.as_str()) && cols.get(2) == Some(&remote.as_str()))
            .then(|| cols.get(9).map(|s| s.to_string()))
            .flatten()
    })
}

/// Waits (bounded) for the handed-over generation `pid` to exit; returns its exit code.
fn wait_exit(svc: &mut Service, pid: i32) -> Option<i32> {
    let code = if pid == svc.first_pid() {
        svc.wait_first_exit()
    } else {
        wait_reaped(pid, WAIT)
    };
    svc.forget(pid);
    code
}

/// The `line_session` example on a free loopback port, tagged, once it listens: its scratch
/// directory, tag, stray-killer and address, and the service (declared last, so dropped
/// first: the service, then the tagged strays, then the directory).
fn start_line_session(name: &str) -> (Scratch, String, KillTagged, SocketAddr, Service) {
    let scratch = Scratch::new(name);
    let tag = unique_tag(name);
    let strays = KillTagged(tag.clone());
    let addr = loopback(free_port());
    let svc = Service::start(
        &example("line_session"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            (TAG_VAR, &tag),
            ("RUST_LOG", "info"),
        ],
    );
    wait_until("the service listens", || TcpStream::connect(addr).is_ok());
    (scratch, tag, strays, addr, svc)
}

/// SIGTERM to the live generation `pid`: it exits 0 and nothing tagged `tag` is left.
fn stop_and_check(svc: &mut Service, pid: i32, tag: &str) {
    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_exit(svc, pid), Some(0), "exit code after SIGTERM");
    assert_eq!(
        tagged_pids(tag),
        Default::default(),
        "processes left behind"
    );
}

#[test]
fn a_client_keeps_one_tcp_connection_across_ten_upgrades_and_every_line_is_answered() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_scratch, tag, _strays, addr, mut svc) = start_line_session("line-session");
    let first = svc.first_pid();

    let mut client = Client::connect(addr);
    assert_eq!(client.ask("first"), format!("pid {first} first"));
    let key = client.writer.local_addr().expect("local address");
    let socket = server_socket_inode(addr, key).expect("the server's socket in /proc/net/tcp");

    // A second client talks without a pause across all the upgrades: each of its lines is
    // answered, in order, by one generation or the next.
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = {
        let stop = stop.clone();
        let mut c = Client::connect(addr);
        std::thread::spawn(move || {
            let mut pids = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 1_000_000 {
                let answer = c.ask(&format!("chat {n}"));
                let pid = parse_pid(&answer);
                assert_eq!(
                    answer,
                    format!("pid {} chat {n}", pid.unwrap_or(0)),
                    "chat line {n}"
                );
                if pids.last() != pid.as_ref() {
                    pids.extend(pid);
                }
                n += 1;
            }
            (n, pids)
        })
    };

    let mut pid = first;
    let mut pids = vec![first];
    for i in 0..10 {
        // Half a line before the upgrade: the old process reads it and must hand it over.
        client.send(&format!("half {i}, "));
        std::thread::sleep(Duration::from_millis(50));
        signal(pid, Signal::SIGHUP);
        assert_eq!(
            wait_exit(&mut svc, pid),
            Some(0),
            "upgrade {i}: old pid {pid} exit code; log:\n{}",
            svc.stderr()
        );
        let answer = client.ask("the other half");
        let next = parse_pid(&answer)
            .unwrap_or_else(|| panic!("upgrade {i}: answer {answer:?}; log:\n{}", svc.stderr()));
        svc.track(next);
        assert_ne!(next, pid, "upgrade {i}: a new process answers");
        assert_eq!(
            answer,
            format!("pid {next} half {i}, the other half"),
            "upgrade {i}: the line typed across the upgrade is answered whole"
        );
        assert_eq!(
            client.ask(&format!("line {i}")),
            format!("pid {next} line {i}")
        );
        assert!(
            socket_inodes(next).contains(&socket),
            "upgrade {i}: the successor holds the socket the first process accepted"
        );
        pids.push(next);
        pid = next;
    }

    stop.store(true, Ordering::Relaxed);
    let (chats, chat_pids) = chatter.join().expect("the chatting client");
    eprintln!(
        "line_session: 10 upgrades, pids {pids:?}; the chatting client sent {chats} lines, answered by {chat_pids:?}"
    );
    assert!(
        chat_pids.len() >= 2,
        "the chatting client's lines were answered across upgrades: {chat_pids:?}"
    );
    assert!(
        chat_pids.iter().all(|p| pids.contains(p)),
        "chat answered only by the service's generations"
    );

    // A stop closes the sessions and exits 0.
    stop_and_check(&mut svc, pid, &tag);
    assert_eq!(client.answer(), "", "the session is closed at the stop");
}

#[test]
fn a_session_that_ended_is_not_handed_over_and_new_sessions_start_on_the_successor() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_scratch, tag, _strays, addr, mut svc) = start_line_session("line-session-ended");
    let first = svc.first_pid();

    let mut gone = Client::connect(addr);
    assert_eq!(gone.ask("bye"), format!("pid {first} bye"));
    let gone_addr = gone.writer.local_addr().expect("local address");
    drop(gone);
    let mut kept = Client::connect(addr);
    assert_eq!(kept.ask("stay"), format!("pid {first} stay"));
    // The old process notices the closed session before the upgrade.
    wait_until("the ended session to be closed on the server", || {
        svc.stderr()
            .lines()
            .any(|l| l.contains("session ended") && l.contains(&format!("Some({gone_addr})")))
    });

    signal(first, Signal::SIGHUP);
    assert_eq!(wait_exit(&mut svc, first), Some(0), "old exit code");
    let answer = kept.ask("still here");
    let next = parse_pid(&answer).expect("a pid");
    svc.track(next);
    assert_ne!(next, first);
    assert_eq!(answer, format!("pid {next} still here"));
    let log = svc.stderr();
    assert_eq!(
        log.matches("session resumed").count(),
        1,
        "only the open session was handed over; log:\n{log}"
    );
    let mut fresh = Client::connect(addr);
    assert_eq!(fresh.ask("new"), format!("pid {next} new"));

    stop_and_check(&mut svc, next, &tag);
}

#[test]
fn go_and_rust_services_hand_one_live_tcp_session_to_each_other() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(go_conn) = support::go::go_peer("conn") else {
        return;
    };
    let rust_conn = example("line_session");
    let scratch = Scratch::new("go-conn");
    let tag = unique_tag("go-conn");
    let _strays = KillTagged(tag.clone());
    let addr = loopback(free_port());
    let exe = scratch.path("svc");
    install_file(&go_conn, &exe);
    let sessions = scratch.path("sessions");
    let mut svc = Service::start(
        &exe,
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("SESSIONS_FILE", &sessions.display().to_string()),
            (TAG_VAR, &tag),
            ("RUST_LOG", "info"),
        ],
    );
    let first = svc.first_pid();
    wait_until("the Go service listens", || {
        TcpStream::connect(addr).is_ok()
    });

    let mut client = Client::connect(addr);
    // Go can't list inherited connections: its successors read their keys from this file.
    let key = client.writer.local_addr().expect("local address");
    std::fs::write(&sessions, format!("tcp {key}\n")).expect("write the sessions file");
    assert_eq!(client.ask("hello Go"), format!("pid {first} hello Go"));
    // The independent check that it is one connection throughout: the server's socket.
    let socket = server_socket_inode(addr, key).expect("the server's socket in /proc/net/tcp");
    assert!(
        socket_inodes(first).contains(&socket),
        "the Go process holds it"
    );

    let mut pid = first;
    let steps = [
        ("Go -> Rust", &rust_conn),
        ("Rust -> Go", &go_conn),
        ("Go -> Rust", &rust_conn),
    ];
    for (i, (what, next_binary)) in steps.into_iter().enumerate() {
        swap_binary(&exe, next_binary);
        signal(pid, Signal::SIGHUP);
        assert_eq!(
            wait_exit(&mut svc, pid),
            Some(0),
            "{what}: old pid {pid} exit code; log:\n{}",
            svc.stderr()
        );
        let answer = client.ask(&format!("step {i}"));
        let next = parse_pid(&answer)
            .unwrap_or_else(|| panic!("{what}: answer {answer:?}; log:\n{}", svc.stderr()));
        svc.track(next);
        assert_ne!(
            next, pid,
            "{what}: the successor answers on the same connection"
        );
        assert_eq!(answer, format!("pid {next} step {i}"), "{what}");
        assert!(
            socket_inodes(next).contains(&socket),
            "{what}: the successor holds the very socket the first process accepted"
        );
        assert_eq!(
            exe_inode(next),
            inode_of(&exe),
            "{what}: the successor runs the binary just deployed"
        );
        assert_eq!(
            client.ask("and again"),
            format!("pid {next} and again"),
            "{what}"
        );
        pid = next;
    }
    let log = svc.stderr();
    let key = key.to_string();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("session resumed") && l.contains(&key))
            .count(),
        3,
        "each successor resumed the session; log:\n{log}"
    );

    stop_and_check(&mut svc, pid, &tag);
    assert_eq!(client.answer(), "", "the session is closed at the stop");
}
