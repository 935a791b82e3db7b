//! The handshake between a tableflip parent and the child it starts, as Go tableflip v1.2.3
//! defines it: the one place its constants live.
//!
//! The parent sets [`SENTINEL`] in the child's environment and places descriptors at fixed
//! numbers: the write end of the ready pipe at [`READY_FD`], the read end of the names pipe
//! at [`NAMES_FD`], and the passed files from [`FIRST_FILE_FD`] on ([`file_fd`]). The parent
//! writes the files' names (gob-encoded) on the names pipe; the child writes [`READY_BYTE`]
//! on the ready pipe once it serves. See docs/protocol.md.

use std::os::fd::RawFd;

/// The variable that tells a process it was started by a tableflip parent.
pub const SENTINEL: &str = "TABLEFLIP_HAS_PARENT_7DIU3";

/// The variables systemd uses for socket activation.
pub(crate) const LISTEN_VARS: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The variables that describe what this process inherited (the tableflip handshake and
/// systemd's socket activation): they are true of this process only, and never reach a
/// process it starts.
pub(crate) const INHERITED_ONLY: [&str; 4] =
    [SENTINEL, LISTEN_VARS[0], LISTEN_VARS[1], LISTEN_VARS[2]];

/// fd 3: the write end of the ready pipe.
pub(crate) const READY_FD: RawFd = 3;
/// fd 4: the read end of the names pipe.
pub(crate) const NAMES_FD: RawFd = 4;
/// fd 5: the first passed file.
pub(crate) const FIRST_FILE_FD: RawFd = 5;

/// The byte that means "ready".
pub(crate) const READY_BYTE: u8 = 42;
/// The byte a Rust child writes on fd 3, after the ready byte, when it begins a graceful
/// stop while its parent lives (a protocol extension: see docs/protocol.md). End of file
/// without it means the child died.
pub(crate) const STOPPING_BYTE: u8 = b's';

/// The descriptor of the `i`-th passed file: `5 + i`.
pub(crate) fn file_fd(i: usize) -> RawFd {
    FIRST_FILE_FD + i as RawFd
}
