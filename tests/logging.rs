//! The default subscriber and the journal: when stderr is the journal (`JOURNAL_STREAM` names
//! stderr's device and inode, as systemd sets it), lines carry no colours and no timestamps.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use nix::sys::signal::Signal;
use support::*;

/// Runs `hello` until it is ready and stopped, with `JOURNAL_STREAM` set by `setup` (a shell
/// line run just before `exec`), and returns what it wrote on stderr.
fn hello_stderr(tag: &str, setup: &str) -> String {
    let scratch = Scratch::new(tag);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{setup}; exec \"$0\""))
        .arg(example("hello"))
        .env("ADDR", addr.to_string())
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG");
    let svc = Service::spawn(cmd, &scratch);
    wait_until("hello answers", || hello(addr).is_ok());
    let pid = svc.first_pid();
    assert_eq!(hello(addr).unwrap(), pid, "the service on {addr} is ours");
    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_reaped(pid, WAIT), Some(0), "SIGTERM exit code");
    let log = svc.stderr();
    assert!(log.contains("ready"), "no log lines: {log:?}");
    log
}

/// A line that starts with an RFC 3339 timestamp, as tracing-subscriber writes it.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
}

#[test]
fn under_the_journal_log_lines_have_no_colours_and_no_timestamps() {
    // `stat` sees the same stderr as the service it becomes (`exec`).
    let log = hello_stderr(
        "log-journal",
        "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); export JOURNAL_STREAM",
    );
    assert!(
        !log.contains('\x1b'),
        "an ANSI escape in the journal: {log:?}"
    );
    let stamped: Vec<&str> = log.lines().filter(|l| has_timestamp(l)).collect();
    assert!(stamped.is_empty(), "timestamps in the journal: {stamped:?}");
}

#[test]
fn a_journal_stream_of_another_file_keeps_the_timestamps() {
    // systemd's variable inherited by a process whose stderr was redirected since.
    let log = hello_stderr(
        "log-not-journal",
        "JOURNAL_STREAM=$(stat -L -c %d:%i /); export JOURNAL_STREAM",
    );
    assert!(
        log.lines().any(has_timestamp),
        "no timestamps on a plain file: {log:?}"
    );
    assert!(!log.contains('\x1b'), "an ANSI escape in a file: {log:?}");
}
