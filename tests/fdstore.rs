//! systemd's fd store against a stand-in for systemd's notification socket
//! (`tests/support/notify.rs`) that accepts messages only from the main process, keeps the
//! stored sockets open as systemd does, and hands them to the next process as `LISTEN_FDS`:
//! the exact messages, who sends them and when, and what a restarted process does with what
//! it gets back. `tests/real_systemd.rs` runs the same under a real systemd.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// The name the runtime stores a TCP listener on 127.0.0.1:`port` under.
fn tcp_name(port: u16) -> String {
    format!("tableflip/listener/tcp/127.0.0.1%3A{port}")
}

fn store_message(name: &str) -> String {
    format!("FDSTORE=1\nFDPOLL=0\nFDNAME={name}")
}

fn remove_message(name: &str) -> String {
    format!("FDSTOREREMOVE=1\nFDNAME={name}")
}

/// The messages from `pid`, texts only.
fn texts_from(notes: &[Note], pid: i32) -> Vec<String> {
    notes
        .iter()
        .filter(|n| n.pid == pid)
        .map(|n| n.text.clone())
        .collect()
}

fn ready_from(pid: i32) -> impl Fn(&[Note]) -> bool {
    move |notes: &[Note]| notes.iter().any(|n| n.pid == pid && n.text == "READY=1")
}

fn holds(pid: i32, inode: u64) -> bool {
    socket_inodes(pid).contains(&inode.to_string())
}

fn all_accepted(notify: &StandIn) {
    let rejected: Vec<Note> = notify.notes().into_iter().filter(|n| !n.accepted).collect();
    assert!(
        rejected.is_empty(),
        "messages from a process that was not the main one (systemd drops them): {rejected:#?}"
    );
}

/// A cold start stores its listener (a port-0 one, keyed by the port bound) before READY=1;
/// an upgrade adds nothing (the successor inherits a stored socket); after `kill -9` of the
/// successor, a connection made while no process runs waits in the backlog of the socket
/// systemd holds, and a process started with the store's sockets claims it (asking for port
/// 0 again) and answers it, storing nothing. A graceful stop removes nothing.
#[test]
fn each_listener_is_stored_once_and_a_restarted_process_claims_it_back() {
    let scratch = Scratch::new("fdstore-once");
    let notify = StandIn::bind(&scratch);
    let exe = example("http");
    let env = notify.env();
    let envs = [
        ("NOTIFY_SOCKET", env.as_str()),
        ("FDSTORE", "4"),
        ("ADDR", "127.0.0.1:0"),
    ];
    notify.expect_new_main();
    let mut first = Service::start(&exe, &scratch, &envs);
    let a = first.first_pid();
    notify.set_main(a);
    let notes = notify.wait_for("READY=1 from the first process", ready_from(a));
    let texts = texts_from(&notes, a);
    assert_eq!(texts.len(), 2, "{notes:#?}");
    let name = notes[0].field("FDNAME").unwrap_or_default().to_owned();
    let port: u16 = name
        .strip_prefix("tableflip/listener/tcp/127.0.0.1%3A")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the stored name of a port-0 listener: {name:?}"));
    assert_eq!(texts, [store_message(&tcp_name(port)), "READY=1".into()]);
    assert_eq!(notes[0].fds, 1);
    let addr = loopback(port);
    let store = notify.store();
    assert_eq!(store.len(), 1, "{store:?}");
    let inode = store[0].1;
    assert!(
        holds(a, inode),
        "the stored socket is the one {a} listens on"
    );
    assert_eq!(http_pid_of(addr).unwrap(), a);

    // An upgrade: the successor inherits the stored socket and stores nothing.
    signal(a, Signal::SIGHUP);
    let b = wait_new_http_pid_of(addr, a);
    first.track(b);
    notify.wait_for("MAINPID= of the successor", |n| {
        n.iter().any(|m| m.field("MAINPID") == Some(&b.to_string()))
    });
    assert_eq!(first.wait_first_exit(), Some(0), "{}", first.stderr());
    assert_eq!(notify.main(), Some(b));

    // kill -9: nothing runs, the stand-in holds the socket, a connection waits.
    signal(b, Signal::SIGKILL);
    wait_reaped(b, WAIT);
    first.forget(b);
    let waiting = PendingRequest::send(addr, "/");

    notify.expect_new_main();
    let mut restarted = start_with_fds(&exe, &scratch, notify.stored_fds(), &envs);
    let c = restarted.first_pid();
    notify.set_main(c);
    let body = waiting
        .answer()
        .expect("the request made while no process ran");
    assert_eq!(parse_pid(&body), Some(c), "{body:?}");
    assert!(
        holds(c, inode),
        "the restarted process serves the stored socket"
    );
    let notes = notify.wait_for("READY=1 from the restarted process", ready_from(c));
    assert_eq!(texts_from(&notes, c), ["READY=1"]);

    signal(c, Signal::SIGTERM);
    assert_eq!(
        restarted.wait_first_exit(),
        Some(0),
        "{}",
        restarted.stderr()
    );
    restarted.forget(c);
    let notes = notify.notes();
    let store_msgs: Vec<&Note> = notes.iter().filter(|n| n.is_store()).collect();
    assert_eq!(
        store_msgs.len(),
        1,
        "stored once, by the first process: {notes:#?}"
    );
    assert_eq!(store_msgs[0].pid, a);
    assert_eq!(notify.store(), [(tcp_name(port), inode)]);
    all_accepted(&notify);
    assert!(
        restarted
            .stderr()
            .contains("systemd handed back sockets from its fd store"),
        "{}",
        restarted.stderr()
    );
}

/// A process started with a stored socket its version no longer declares closes it at ready
/// and removes it from the store (before storing its own): the store never keeps a socket
/// nobody serves, and the old port refuses connections again.
#[test]
fn a_stored_socket_nobody_claims_is_removed_from_the_store() {
    let scratch = Scratch::new("fdstore-gone");
    let notify = StandIn::bind(&scratch);
    let exe = example("http");
    let env = notify.env();
    let (p1, p2) = (free_port(), free_port());
    let (addr1, addr2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let first_envs = [
        ("NOTIFY_SOCKET", env.as_str()),
        ("FDSTORE", "4"),
        ("ADDR", addr1.as_str()),
    ];
    notify.expect_new_main();
    let mut first = Service::start(&exe, &scratch, &first_envs);
    let a = first.first_pid();
    notify.set_main(a);
    notify.wait_for("READY=1 from the first process", ready_from(a));
    assert_eq!(notify.store().len(), 1);
    signal(a, Signal::SIGKILL);
    assert_eq!(first.wait_first_exit(), None);
    first.forget(a);

    let next_envs = [
        ("NOTIFY_SOCKET", env.as_str()),
        ("FDSTORE", "4"),
        ("ADDR", addr2.as_str()),
    ];
    notify.expect_new_main();
    let mut next = start_with_fds(&exe, &scratch, notify.stored_fds(), &next_envs);
    let c = next.first_pid();
    notify.set_main(c);
    let notes = notify.wait_for("READY=1 from the new version", ready_from(c));
    assert_eq!(
        texts_from(&notes, c),
        [
            remove_message(&tcp_name(p1)),
            store_message(&tcp_name(p2)),
            "READY=1".into()
        ]
    );
    let store = notify.store();
    assert_eq!(store.len(), 1, "{store:?}");
    assert_eq!(store[0].0, tcp_name(p2));
    assert!(holds(c, store[0].1));
    assert_eq!(http_pid_of(loopback(p2)).unwrap(), c);
    let refused = TcpStream::connect_timeout(&loopback(p1), Duration::from_secs(5));
    assert!(
        refused.is_err(),
        "nothing may listen on the removed socket's port"
    );
    all_accepted(&notify);
    signal(c, Signal::SIGTERM);
    assert_eq!(next.wait_first_exit(), Some(0), "{}", next.stderr());
    next.forget(c);
}

/// systemd takes fd store messages only from the main process. A successor whose version
/// binds a new listener and drops an old one becomes the main process when its parent hands
/// over (`MAINPID=`): its store changes come after that, from it, once its parent has exited,
/// and are all accepted.
#[test]
fn a_successor_updates_the_store_only_as_the_main_process() {
    let scratch = Scratch::new("fdstore-successor");
    let notify = StandIn::bind(&scratch);
    let bin = scratch.path("http");
    install_file(&example("http"), &bin);
    let env = notify.env();
    let (p1, p2) = (free_port(), free_port());
    let addr1 = format!("127.0.0.1:{p1}");
    let envs = [
        ("NOTIFY_SOCKET", env.as_str()),
        ("FDSTORE", "4"),
        ("ADDR", addr1.as_str()),
    ];
    notify.expect_new_main();
    let mut first = Service::start(&bin, &scratch, &envs);
    let a = first.first_pid();
    notify.set_main(a);
    notify.wait_for("READY=1 from the first process", ready_from(a));

    // The next version listens on p2 instead.
    swap_script(
        &bin,
        &format!(
            "#!/bin/sh\nADDR=127.0.0.1:{p2} exec {} \"$@\"\n",
            example("http").display()
        ),
    );
    signal(a, Signal::SIGHUP);
    let b = wait_new_http_pid_of(loopback(p2), a);
    first.track(b);
    assert_eq!(first.wait_first_exit(), Some(0), "{}", first.stderr());
    let notes = notify.wait_for("the successor's store changes", |n| {
        n.iter().filter(|m| m.pid == b && m.is_store()).count() == 2
    });
    let handover = notes
        .iter()
        .position(|n| n.pid == a && n.field("MAINPID") == Some(&b.to_string()))
        .expect("MAINPID= of the successor");
    let changes: Vec<usize> = (0..notes.len())
        .filter(|&i| notes[i].pid == b && notes[i].is_store())
        .collect();
    assert!(
        changes.iter().all(|&i| i > handover),
        "store changes before the handover: {notes:#?}"
    );
    assert_eq!(notes[changes[0]].text, remove_message(&tcp_name(p1)));
    assert_eq!(notes[changes[1]].text, store_message(&tcp_name(p2)));
    all_accepted(&notify);
    let store = notify.store();
    assert_eq!(store.len(), 1, "{store:?}");
    assert_eq!(store[0].0, tcp_name(p2));
    assert!(holds(b, store[0].1));
    signal(b, Signal::SIGTERM);
    wait_reaped(b, WAIT);
    first.forget(b);
}

/// Packet sockets are stored too; `TABLEFLIP_FDSTORE=0` keeps the runtime out of the store,
/// and without `$FDSTORE` nothing is stored.
#[test]
fn packet_sockets_are_stored_and_the_store_can_be_left_alone() {
    let exe = example("udp");
    for (fdstore, opt_out, stored) in [
        (Some("4"), None, true),
        (Some("4"), Some("0"), false),
        (None, None, false),
    ] {
        let scratch = Scratch::new("fdstore-udp");
        let notify = StandIn::bind(&scratch);
        let env = notify.env();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut envs = vec![("NOTIFY_SOCKET", env.as_str()), ("ADDR", addr.as_str())];
        if let Some(n) = fdstore {
            envs.push(("FDSTORE", n));
        }
        if let Some(v) = opt_out {
            envs.push(("TABLEFLIP_FDSTORE", v));
        }
        notify.expect_new_main();
        let mut svc = Service::start(&exe, &scratch, &envs);
        let pid = svc.first_pid();
        notify.set_main(pid);
        let notes = notify.wait_for("READY=1", ready_from(pid));
        let expected: Vec<String> = if stored {
            vec![
                store_message(&format!("tableflip/packet/udp/127.0.0.1%3A{port}")),
                "READY=1".into(),
            ]
        } else {
            vec!["READY=1".into()]
        };
        assert_eq!(texts_from(&notes, pid), expected, "{envs:?}");
        signal(pid, Signal::SIGTERM);
        assert_eq!(svc.wait_first_exit(), Some(0), "{}", svc.stderr());
        svc.forget(pid);
    }
}
