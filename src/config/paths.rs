//! File system paths in the config: `~` expansion, paths relative to the config file, and
//! the per-OS default locations.

use std::path::{Path, PathBuf};

/// Expands a leading `~` to the home directory and resolves a relative path against
/// `base_dir` (the directory of the config file).
pub fn expand_path(path: &str, base_dir: &Path) -> PathBuf {
    let expanded = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match home_dir() {
            Some(home) => home.join(rest.trim_start_matches('/')),
            None => PathBuf::from(path),
        },
        _ => PathBuf::from(path),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base_dir.join(expanded)
    }
}

pub fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

/// Where state lives when `agent.state_dir` is not set: `~/.local/state/klaxon` on Linux
/// (XDG), `~/Library/Application Support/klaxon` on macOS.
pub fn default_state_dir() -> PathBuf {
    let Some(dirs) = directories::BaseDirs::new() else {
        return PathBuf::from(".klaxon");
    };
    dirs.state_dir()
        .unwrap_or_else(|| dirs.data_dir())
        .join("klaxon")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file() {
        let base = Path::new("/etc/klaxon");
        assert_eq!(expand_path(".env", base), Path::new("/etc/klaxon/.env"));
        assert_eq!(expand_path("/abs/x", base), Path::new("/abs/x"));
        if let Some(home) = home_dir() {
            assert_eq!(expand_path("~/x", base), home.join("x"));
            assert_eq!(expand_path("~", base), home);
        }
        assert_eq!(
            expand_path("~user/x", base),
            Path::new("/etc/klaxon/~user/x")
        );
    }
}
