//! An upgrade where the system has no process or thread to spare (a cgroup's `pids.max`
//! reached, as under a container's limit or a machine out of memory): the new process can't
//! start, and that must be a refused upgrade (one error line, the service serving on), never
//! a panic. Once the limit is lifted, the next upgrade works.
//!
//! Needs root and the cgroup v1 `pids` controller (`/sys/fs/cgroup/pids`); without them the
//! test says so in one line and returns.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// A cgroup of the v1 `pids` controller, removed on drop (once its processes are gone).
struct PidsCgroup(PathBuf);

impl PidsCgroup {
    fn create(name: &str) -> Option<PidsCgroup> {
        let root = PathBuf::from("/sys/fs/cgroup/pids");
        if !root.join("cgroup.procs").exists() {
            return None;
        }
        let dir = root.join(name);
        std::fs::create_dir(&dir).ok()?;
        Some(PidsCgroup(dir))
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.0.join(file), value)
            .unwrap_or_else(|e| panic!("write {value} to {file}: {e}"));
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Its processes were killed and reaped just before (the service is dropped first).
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn threads_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

#[test]
fn an_upgrade_with_no_process_to_spare_is_refused_without_a_panic_and_the_next_one_works() {
    let tag = unique_tag("pids-limit");
    let Some(cgroup) = PidsCgroup::create(&tag) else {
        eprintln!("skipped: no writable cgroup v1 pids controller (needs root)");
        return;
    };
    let scratch = Scratch::new("pids-limit");
    let _strays = KillTagged(tag.clone());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut svc = Service::start(
        &example("http"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "10s"),
            ("RUST_LOG", "info"),
            (TAG_VAR, &tag),
        ],
    );
    let old = svc.first_pid();
    wait_until("the first answer", || http_pid_of(addr).ok() == Some(old));
    // Every thread it will have at rest is there once it answered; the cgroup then allows
    // not one more process or thread.
    std::thread::sleep(Duration::from_millis(200));
    cgroup.write("cgroup.procs", &old.to_string());
    cgroup.write("pids.max", &threads_of(old).to_string());

    signal(old, Signal::SIGHUP);
    wait_until("the upgrade is refused", || {
        svc.stderr().contains("upgrade failed")
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        http_pid_of(addr).ok(),
        Some(old),
        "the service serves on:\n{}",
        svc.stderr()
    );
    assert!(!svc.stderr().contains("panicked"), "{}", svc.stderr());

    // The limit lifted, the next upgrade works.
    cgroup.write("pids.max", "max");
    signal(old, Signal::SIGHUP);
    let new = wait_new_http_pid_of(addr, old);
    svc.track(new);
    assert_eq!(svc.wait_first_exit(), Some(0), "{}", svc.stderr());
    let log = svc.stderr();
    assert!(!log.contains("panicked"), "{log}");
    signal(new, Signal::SIGTERM);
    assert_eq!(wait_reaped(new, WAIT), Some(0), "SIGTERM exit code");
    svc.forget(new);
    drop(svc);
}
