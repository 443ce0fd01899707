//! Advisory file locks that the OS releases when the process ends, however it ends: a
//! lock left by a crashed agent or `exec` never blocks the next one.

use std::fs::File;
use std::path::Path;

use anyhow::Context;

/// Takes `dir/name` (creating both) without waiting: the open, locked file, or `None`
/// when another process holds it. Keep the file to keep the lock.
pub fn try_lock(dir: &Path, name: &str) -> anyhow::Result<Option<File>> {
    crate::private::dir(dir)
        .with_context(|| format!("cannot create the directory `{}`", dir.display()))?;
    let path = dir.join(name);
    crate::private::file(&path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock `{}`", path.display()))
        }
    }
}
