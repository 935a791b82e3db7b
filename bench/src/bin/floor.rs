//! The floor of an upgrade: a minimal program that writes one byte to the pipe it inherited
//! at descriptor 3 and exits. The bench starts it with fork+exec, as an upgrade starts its
//! successor, and times it exactly as it times an upgrade cycle.
#![allow(unsafe_code)]

use std::io::Write;
use std::os::fd::FromRawFd;

fn main() {
    // SAFETY: the bench places the write end of a pipe at descriptor 3 (command-fds) and
    // nothing else in this program opens or owns that number.
    let mut ready = unsafe { std::fs::File::from_raw_fd(3) };
    let _ = ready.write_all(b"R");
}
