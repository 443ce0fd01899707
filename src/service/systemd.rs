//! The systemd user unit that runs `klaxon run` (`~/.config/systemd/user/klaxon.service`)
//! and the `systemctl --user` plans that enable and remove it. The unit text comes from
//! a small typed writer; every value that carries a path goes through [`quote`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Invocation, Plan, Step, argv};

/// The unit's name; one klaxon agent per user.
pub const UNIT_NAME: &str = "klaxon.service";

/// Seconds systemd waits before starting klaxon again after it failed.
pub const RESTART_SEC: u32 = 10;

/// Searched after the binary's own directory: systemd's default `PATH` plus `/sbin`
/// and `/bin` for systems without a merged /usr.
pub const STANDARD_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Where a word goes in the unit file, which decides what systemd expands in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The program of an `Exec*=` line: `%` specifiers are expanded, `$` is not.
    Program,
    /// An argument of an `Exec*=` line: `%` specifiers and `$VAR` are expanded.
    Argument,
    /// An `Environment=` assignment: `%` specifiers are expanded, `$` is not.
    Environment,
}

/// One word as systemd must read it back (systemd.syntax(7) "Quoting", systemd.service(5)
/// "Command lines"): `%` becomes `%%`, `$` becomes `$$` where variables are expanded,
/// and a word with anything beyond plain path characters is double-quoted with C-style
/// escapes for `\`, `"` and control characters.
pub fn quote(word: &str, field: Field) -> String {
    let mut body = String::with_capacity(word.len() + 2);
    let mut needs_quotes = word.is_empty();
    for c in word.chars() {
        match c {
            '%' => body.push_str("%%"),
            '$' if field == Field::Argument => body.push_str("$$"),
            '\\' => body.push_str(r"\\"),
            '"' => body.push_str("\\\""),
            '\n' => body.push_str(r"\n"),
            '\t' => body.push_str(r"\t"),
            c if c.is_control() => {
                // Control characters are all below U+00A0, so two hex digits would not
                // always do; `\u` takes four.
                let _ = write!(body, "\\u{:04x}", u32::from(c));
            }
            c => body.push(c),
        }
        if !(c.is_ascii_alphanumeric() || "/._-+=:@,%$".contains(c)) {
            needs_quotes = true;
        }
    }
    if needs_quotes {
        format!("\"{body}\"")
    } else {
        body
    }
}

/// Where the user unit for the klaxon agent lives; what it runs is given to
/// [`UserUnit::text`] and [`UserUnit::install_plan`] (uninstalling needs no config).
#[derive(Debug, Clone)]
pub struct UserUnit {
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub config_home: PathBuf,
}

impl UserUnit {
    /// `$XDG_CONFIG_HOME` when it is set and absolute (as the XDG spec requires), else
    /// `HOME/.config`.
    pub fn config_home(xdg_config_home: Option<&str>, home: &Path) -> PathBuf {
        match xdg_config_home {
            Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
            _ => home.join(".config"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.config_home.join("systemd/user").join(UNIT_NAME)
    }

    /// The unit file's text.
    pub fn text(&self, inv: &Invocation) -> String {
        let exec_start = std::iter::once(quote(&inv.program, Field::Program))
            .chain(
                inv.arguments()[1..]
                    .iter()
                    .map(|a| quote(a, Field::Argument)),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let path = format!("PATH={}", inv.path_env(STANDARD_PATH));
        let mut unit = UnitWriter::default();
        unit.comment("Written by `klaxon systemd install`; `klaxon systemd print` shows it.")
            .comment("User services stop at logout unless lingering is on:")
            .comment("  loginctl enable-linger \"$USER\"");
        unit.section("Unit")
            .entry("Description", "klaxon monitoring agent");
        unit.section("Service")
            // `exec`: `systemctl start` reports failure when the binary cannot be
            // started at all, which `simple` would hide.
            .entry("Type", "exec")
            .entry("ExecStart", &exec_start)
            // klaxon reloads its config on SIGHUP: `systemctl --user reload klaxon`.
            .entry("ExecReload", "/bin/kill -HUP $MAINPID")
            // Restart after a crash or a non-zero exit, not after a clean stop. A
            // config error at start restarts too, RestartSec apart, so the agent comes
            // back by itself once the file is fixed; the default start limit (5 in 10 s)
            // cannot trip at this pace.
            .entry("Restart", "on-failure")
            .entry("RestartSec", &RESTART_SEC.to_string())
            // The user manager's PATH lacks the binary's own directory (~/.cargo/bin,
            // say), where tools for script checks often live too.
            .entry("Environment", &quote(&path, Field::Environment));
        unit.section("Install")
            // `default.target` is reached when the user manager starts (at login, or
            // at boot with lingering).
            .entry("WantedBy", "default.target");
        unit.finish()
    }

    /// Writes the unit, reloads systemd, enables and starts it; a unit that was already
    /// running is restarted so a changed unit takes effect.
    pub fn install_plan(&self, invocation: &Invocation) -> Plan {
        Plan {
            tool: "systemctl",
            steps: vec![
                // Fails ("Failed to connect to bus") when there is no user manager to
                // talk to, before anything is written.
                Step::Run {
                    args: argv(&["systemctl", "--user", "show-environment"]),
                    only_if: None,
                },
                Step::Write {
                    path: self.path(),
                    contents: self.text(invocation).into_bytes(),
                },
                Step::Run {
                    args: argv(&["systemctl", "--user", "daemon-reload"]),
                    only_if: None,
                },
                Step::Probe {
                    args: argv(&["systemctl", "--user", "is-active", "--quiet", UNIT_NAME]),
                    question: RUNNING,
                },
                Step::Run {
                    args: argv(&["systemctl", "--user", "enable", "--now", UNIT_NAME]),
                    only_if: None,
                },
                Step::Run {
                    args: argv(&["systemctl", "--user", "restart", UNIT_NAME]),
                    only_if: Some(RUNNING),
                },
            ],
        }
    }

    /// Stops and disables the unit, removes it and reloads systemd. `None` when the
    /// unit file is not there: nothing to undo (`systemctl disable` would fail on it).
    pub fn uninstall_plan(&self) -> Option<Plan> {
        let path = self.path();
        if !path.exists() {
            return None;
        }
        Some(Plan {
            tool: "systemctl",
            steps: vec![
                Step::Run {
                    args: argv(&["systemctl", "--user", "disable", "--now", UNIT_NAME]),
                    only_if: None,
                },
                Step::Remove(path),
                Step::Run {
                    args: argv(&["systemctl", "--user", "daemon-reload"]),
                    only_if: None,
                },
            ],
        })
    }
}

const RUNNING: &str = "is klaxon.service running?";

/// Builds an INI-style unit file: comments, then sections of `Key=value` lines.
/// Values are written as given; callers quote what needs it with [`quote`].
#[derive(Debug, Default)]
struct UnitWriter {
    text: String,
}

impl UnitWriter {
    fn comment(&mut self, line: &str) -> &mut Self {
        let _ = writeln!(self.text, "# {line}");
        self
    }

    fn section(&mut self, name: &str) -> &mut Self {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        let _ = writeln!(self.text, "[{name}]");
        self
    }

    fn entry(&mut self, key: &str, value: &str) -> &mut Self {
        let _ = writeln!(self.text, "{key}={value}");
        self
    }

    fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn quoting_escapes_specifiers_variables_and_quotes() {
        use Field::*;
        let cases = [
            ("/usr/bin/klaxon", Program, "/usr/bin/klaxon"),
            ("run", Argument, "run"),
            ("--config", Argument, "--config"),
            ("/a b/k", Program, r#""/a b/k""#),
            ("/my %h/$HOME.toml", Argument, r#""/my %%h/$$HOME.toml""#),
            ("/x/100%", Argument, "/x/100%%"),
            ("/p/$x", Program, "/p/$x"),
            ("/p/$x", Argument, "/p/$$x"),
            ("PATH=/a $b:/c", Environment, r#""PATH=/a $b:/c""#),
            ("PATH=/a%b", Environment, "PATH=/a%%b"),
            (r#"/say "hi"\now"#, Argument, r#""/say \"hi\"\\now""#),
            ("/it's", Argument, r#""/it's""#),
            ("a\nb\tc\u{1}", Argument, r#""a\nb\tc\u0001""#),
            ("", Argument, r#""""#),
            (";", Argument, r#"";""#),
            ("/ümlaut", Argument, r#""/ümlaut""#),
        ];
        for (word, field, want) in cases {
            assert_eq!(quote(word, field), want, "{word:?} as {field:?}");
        }
    }

    fn unit() -> UserUnit {
        UserUnit {
            config_home: PathBuf::from("/home/ann/.config"),
        }
    }

    fn invocation(program: &str, config: &str) -> Invocation {
        Invocation::new(Path::new(program), Path::new(config)).unwrap()
    }

    #[test]
    fn the_unit_runs_klaxon_with_its_config() {
        let inv = invocation(
            "/home/ann/.cargo/bin/klaxon",
            "/home/ann/My 100% $config.toml",
        );
        let text = unit().text(&inv);
        assert_eq!(
            text,
            "# Written by `klaxon systemd install`; `klaxon systemd print` shows it.\n\
             # User services stop at logout unless lingering is on:\n\
             #   loginctl enable-linger \"$USER\"\n\
             \n\
             [Unit]\n\
             Description=klaxon monitoring agent\n\
             \n\
             [Service]\n\
             Type=exec\n\
             ExecStart=/home/ann/.cargo/bin/klaxon --config \"/home/ann/My 100%% $$config.toml\" run\n\
             ExecReload=/bin/kill -HUP $MAINPID\n\
             Restart=on-failure\n\
             RestartSec=10\n\
             Environment=PATH=/home/ann/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             \n\
             [Install]\n\
             WantedBy=default.target\n"
        );
    }

    #[test]
    fn the_unit_lives_under_xdg_config_home() {
        let home = Path::new("/home/ann");
        assert_eq!(UserUnit::config_home(Some("/xdg"), home), Path::new("/xdg"));
        assert_eq!(
            UserUnit::config_home(Some("relative"), home),
            Path::new("/home/ann/.config")
        );
        assert_eq!(
            UserUnit::config_home(None, home),
            Path::new("/home/ann/.config")
        );
        assert_eq!(
            unit().path(),
            Path::new("/home/ann/.config/systemd/user/klaxon.service")
        );
    }

    #[test]
    fn install_restarts_only_a_running_unit() {
        let plan = unit().install_plan(&invocation("/k", "/c"));
        assert_eq!(
            plan.describe(),
            "  1. run `systemctl --user show-environment`\n\
             \x20 2. write /home/ann/.config/systemd/user/klaxon.service\n\
             \x20 3. run `systemctl --user daemon-reload`\n\
             \x20 4. run `systemctl --user is-active --quiet klaxon.service` (is klaxon.service running?)\n\
             \x20 5. run `systemctl --user enable --now klaxon.service`\n\
             \x20 6. run `systemctl --user restart klaxon.service` if yes to \"is klaxon.service running?\"\n"
        );
    }

    #[test]
    fn uninstall_needs_the_unit_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = unit();
        u.config_home = dir.path().to_path_buf();
        assert_eq!(u.uninstall_plan(), None);
        std::fs::create_dir_all(dir.path().join("systemd/user")).unwrap();
        std::fs::write(u.path(), "x").unwrap();
        let plan = u.uninstall_plan().unwrap();
        assert_eq!(
            plan.describe(),
            format!(
                "  1. run `systemctl --user disable --now klaxon.service`\n\
                 \x20 2. remove {}\n\
                 \x20 3. run `systemctl --user daemon-reload`\n",
                u.path().display()
            )
        );
    }
}
