//! The pid file: written to a temporary file in the same directory, fsynced, renamed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes this process's pid to `path` atomically.
///
/// The temporary file is created with `O_EXCL | O_NOFOLLOW`, so a planted symlink is never
/// followed, and the rename replaces whatever `path` was (a symlink there is replaced, not
/// followed). The directory is fsynced after the rename so the new content survives a crash.
pub(crate) fn write(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the pid file path has no file name",
        )
    })?;
    let pid = std::process::id();
    let tmp = dir.join(format!(".{}.{pid}.tmp", name.to_string_lossy()));
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
    };
    let result = (|| {
        let mut file = match create() {
            // Left by a process that had this pid and died between create and rename (pids
            // repeat, in containers especially), or planted: the name is ours, so remove it
            // (that never follows a symlink) and create afresh.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                create()?
            }
            other => other?,
        };
        writeln!(file, "{pid}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_pid_and_replaces_a_symlink_instead_of_following_it() {
        let dir = std::env::temp_dir().join(format!("tableflip-pidfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("victim");
        std::fs::write(&target, "keep").unwrap();
        let pid_path = dir.join("app.pid");
        std::os::unix::fs::symlink(&target, &pid_path).unwrap();

        write(&pid_path).unwrap();

        assert_eq!(
            std::fs::read_to_string(&pid_path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(
            !std::fs::symlink_metadata(&pid_path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_or_planted_temporary_file_does_not_block_the_write() {
        let dir = std::env::temp_dir().join(format!("tableflip-pidtmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pid_path = dir.join("app.pid");
        let tmp = dir.join(format!(".app.pid.{}.tmp", std::process::id()));
        let target = dir.join("victim");
        std::fs::write(&target, "keep").unwrap();

        // A symlink planted at the temporary path is removed, not followed.
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        write(&pid_path).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // A stale temporary file, as a crash between create and rename leaves it.
        std::fs::write(&tmp, "12345\n").unwrap();
        write(&pid_path).unwrap();

        assert_eq!(
            std::fs::read_to_string(&pid_path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert!(!tmp.exists(), "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        assert!(write(Path::new("/nonexistent-tableflip-dir/app.pid")).is_err());
    }
}
