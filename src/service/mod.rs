//! Installing `klaxon run` as a per-user service: a launchd LaunchAgent on macOS
//! ([`launchd`]) or a systemd user unit on Linux ([`systemd`]).
//!
//! Each installer turns what it knows (the binary, the config, the home directory) into a
//! [`Plan`]: files to write or remove and commands to run, some only when an earlier probe
//! succeeded ("is it loaded?"). Plans are pure values, so tests check them exactly; one
//! function, [`Plan::execute`], carries them out, and the same plan is what klaxon prints
//! when the service manager is missing.

pub mod launchd;
pub mod systemd;

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why installing or removing a service failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("path `{}` is not UTF-8; a service definition cannot name it", .0.display())]
    NotUtf8(PathBuf),
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot build the plist: {0}")]
    Plist(#[from] plist::Error),
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// What a service runs: `PROGRAM --config CONFIG run`, both absolute and UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub config: String,
}

impl Invocation {
    /// From absolute paths (the caller canonicalizes them); non-UTF-8 paths are refused
    /// because neither a plist string nor a unit file can hold them.
    pub fn new(program: &Path, config: &Path) -> Result<Self, ServiceError> {
        let utf8 = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| ServiceError::NotUtf8(p.to_path_buf()))
        };
        Ok(Self {
            program: utf8(program)?,
            config: utf8(config)?,
        })
    }

    pub fn arguments(&self) -> [&str; 4] {
        [&self.program, "--config", &self.config, "run"]
    }

    /// `PATH` for the service. Service managers start jobs with a bare `PATH`
    /// (launchd: `/usr/bin:/bin:/usr/sbin:/sbin`), so `script` checks and `command`
    /// notifiers that work in a terminal would not find Homebrew's or /usr/local's tools.
    /// The binary's own directory comes first: tools installed beside klaxon (by the
    /// same package manager) are the ones the user meant. `standard` follows, in order.
    pub fn path_env(&self, standard: &[&str]) -> String {
        let own = Path::new(&self.program)
            .parent()
            .and_then(Path::to_str)
            // A directory with `:` in its name cannot be a PATH entry.
            .filter(|dir| !dir.is_empty() && !dir.contains(':'));
        let mut dirs: Vec<&str> = Vec::new();
        for dir in own.into_iter().chain(standard.iter().copied()) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs.join(":")
    }
}

/// One thing an install or uninstall does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateDir(PathBuf),
    /// Written atomically: a temp file in the same directory, then a rename.
    Write {
        path: PathBuf,
        contents: Vec<u8>,
    },
    /// Removed if it exists.
    Remove(PathBuf),
    /// A command whose success answers `question`; later steps may depend on it.
    Probe {
        args: Vec<String>,
        question: &'static str,
    },
    /// A command that must succeed; with `only_if`, run only when the probe with that
    /// question succeeded.
    Run {
        args: Vec<String>,
        only_if: Option<&'static str>,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateDir(path) => write!(f, "create the directory {}", path.display()),
            Step::Write { path, .. } => write!(f, "write {}", path.display()),
            Step::Remove(path) => write!(f, "remove {}", path.display()),
            Step::Probe { args, question } => {
                write!(f, "run `{}` ({question})", shell_line(args))
            }
            Step::Run { args, only_if } => {
                write!(f, "run `{}`", shell_line(args))?;
                match only_if {
                    Some(question) => write!(f, " if yes to \"{question}\""),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The steps of an install or uninstall, and the service manager's command they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `launchctl` or `systemctl`: the first word of every command step.
    pub tool: &'static str,
    pub steps: Vec<Step>,
}

impl Plan {
    /// What the plan would do, one numbered step a line.
    pub fn describe(&self) -> String {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| format!("  {}. {step}\n", i + 1))
            .collect()
    }

    /// Carries out the plan, running commands with the `tool` found on `path_env` (the
    /// `PATH` value). Each command is echoed to `echo` before it runs. When the tool is
    /// not on `PATH`, nothing is done and the answer is `Ok(false)`.
    pub fn execute(
        &self,
        path_env: Option<&OsStr>,
        echo: &mut dyn Write,
    ) -> Result<bool, ServiceError> {
        let Some(tool) = find_program(self.tool, path_env) else {
            return Ok(false);
        };
        let mut yes: Vec<&'static str> = Vec::new();
        for step in &self.steps {
            match step {
                Step::CreateDir(path) => {
                    std::fs::create_dir_all(path).map_err(|source| ServiceError::Io {
                        what: "cannot create the directory",
                        path: path.clone(),
                        source,
                    })?;
                }
                Step::Write { path, contents } => write_atomically(path, contents)?,
                Step::Remove(path) => match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(ServiceError::Io {
                            what: "cannot remove",
                            path: path.clone(),
                            source,
                        });
                    }
                },
                Step::Probe { args, question } => {
                    if run(&tool, args, echo)?.status.success() {
                        yes.push(question);
                    }
                }
                Step::Run { args, only_if } => {
                    if only_if.is_some_and(|q| !yes.contains(&q)) {
                        continue;
                    }
                    let output = run(&tool, args, echo)?;
                    if !output.status.success() {
                        return Err(ServiceError::Failed {
                            command: shell_line(args),
                            status: output.status,
                            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                        });
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Runs `tool` with `args[1..]` (`args[0]` is its name), echoing the command line first.
fn run(
    tool: &Path,
    args: &[String],
    echo: &mut dyn Write,
) -> Result<std::process::Output, ServiceError> {
    let command = shell_line(args);
    // The echo is a courtesy: a closed stderr must not stop the install.
    let _ = writeln!(echo, "$ {command}");
    Command::new(tool)
        .args(args.iter().skip(1))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| ServiceError::Spawn { command, source })
}

/// The first executable file called `name` in the directories of `path_env`.
pub fn find_program(name: &str, path_env: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_env?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Writes `contents` to a temp file beside `path`, then renames it over `path`, so a
/// service manager (or a crash) never sees half a file. Creates the parent directory.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ServiceError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ServiceError::Io { what, path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("cannot create the directory", dir))?;
    let name = path
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("service");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .map_err(io("cannot write", &temp));
    if let Err(e) =
        written.and_then(|()| std::fs::rename(&temp, path).map_err(io("cannot write", path)))
    {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(())
}

/// A command line as a POSIX shell would need it typed: words with only safe
/// characters as they are, the rest in single quotes.
pub fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let safe = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@%,".contains(c));
            if safe {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Converts `&[&str]` to the owned argument vector of a [`Step`].
fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn shell_line_quotes_only_what_needs_it() {
        let args = argv(&["launchctl", "bootstrap", "gui/501", "/a b/it's.plist", ""]);
        assert_eq!(
            shell_line(&args),
            r"launchctl bootstrap gui/501 '/a b/it'\''s.plist' ''"
        );
    }

    #[test]
    fn path_env_puts_the_binary_directory_first_once() {
        let inv =
            Invocation::new(Path::new("/opt/homebrew/bin/klaxon"), Path::new("/c.toml")).unwrap();
        assert_eq!(
            inv.path_env(&["/usr/local/bin", "/opt/homebrew/bin", "/usr/bin"]),
            "/opt/homebrew/bin:/usr/local/bin:/usr/bin"
        );
        let odd = Invocation::new(Path::new("/a:b/klaxon"), Path::new("/c.toml")).unwrap();
        assert_eq!(odd.path_env(&["/usr/bin"]), "/usr/bin");
    }

    #[test]
    fn writes_atomically_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.plist");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }

    #[test]
    fn finds_only_executable_files_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a");
        let exe = dir.path().join("b");
        std::fs::create_dir(&plain).unwrap();
        std::fs::create_dir(&exe).unwrap();
        std::fs::write(plain.join("tool"), "").unwrap();
        std::fs::write(exe.join("tool"), "").unwrap();
        std::fs::set_permissions(exe.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&plain, &exe]).unwrap();
        assert_eq!(find_program("tool", Some(&path)), Some(exe.join("tool")));
        assert_eq!(find_program("other", Some(&path)), None);
        assert_eq!(find_program("tool", None), None);
    }
}
