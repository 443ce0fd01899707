//! Files only the user may read: the state directory is 0700, and the database (with its
//! `-wal` and `-shm`), lock files and log files are 0600, whatever the umask. They hold
//! check output and message payloads.

use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Creates `dir` (and its missing parents) with the last one 0700. An existing `dir`
/// that group or others may use is set to 0700, with a warning naming its old mode.
pub fn dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => tighten(dir, 0o700),
        Err(e) => Err(e),
    }
}

/// Creates `path` 0600 if it is missing (empty, without truncating one that exists), and
/// tightens an existing one to 0600 as [`tighten`] does.
pub fn file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?;
    tighten(path, 0o600)
}

/// Sets `path` to `mode` when group or others have any access to it, with a warning
/// naming the path and its old mode. A missing `path` is left missing.
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let old = meta.permissions().mode() & 0o7777;
        if old & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            tracing::warn!(
                path = %path.display(),
                old_mode = format!("{old:04o}"),
                new_mode = format!("{mode:04o}"),
                "others could read klaxon's state: tightened its permissions"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_dir_is_0700_and_a_loose_one_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let new = root.path().join("a/b/state");
        dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        let loose = root.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
    }

    #[test]
    fn files_are_0600_and_keep_their_contents() {
        let root = tempfile::tempdir().unwrap();
        let new = root.path().join("new");
        file(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
        let old = root.path().join("old");
        std::fs::write(&old, "kept").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        file(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "kept");
        tighten(&root.path().join("missing"), 0o600).unwrap();
        assert!(!root.path().join("missing").exists());
    }
}
