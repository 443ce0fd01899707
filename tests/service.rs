//! End-to-end tests of `klaxon launchd …` and `klaxon systemd …`: the real binary, with
//! HOME and XDG_CONFIG_HOME in a temp dir and a PATH holding only fake `launchctl` and
//! `systemctl` scripts. The fakes record every call and keep the service's state
//! (loaded, running) in files, refusing what the real tools refuse (bootstrapping a
//! loaded agent, booting out one that is not loaded), so a missing step fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CONFIG: &str = include_str!("fixtures/service.toml");

/// A fake launchctl. `print` succeeds when the agent is loaded; `bootstrap` needs the
/// plist and fails on a loaded agent; `bootout` fails on one that is not loaded. A file
/// `fail-VERB` beside the script makes that verb fail with a message on stderr.
const LAUNCHCTL: &str = r#"#!/bin/sh
dir="${0%/*}"
echo "launchctl $*" >> "$dir/calls"
if [ -e "$dir/fail-$1" ]; then echo "launchctl: $1 failed on purpose" >&2; exit 5; fi
case "$1" in
  print) [ -e "$dir/loaded" ] || { echo "Could not find service" >&2; exit 113; } ;;
  bootstrap)
    [ -f "$3" ] || { echo "no plist at $3" >&2; exit 2; }
    [ -e "$dir/loaded" ] && { echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; }
    : > "$dir/loaded" ;;
  bootout)
    [ -e "$dir/loaded" ] || { echo "Boot-out failed: 3: No such process" >&2; exit 3; }
    /bin/rm "$dir/loaded" ;;
  enable) ;;
  *) echo "unexpected verb $1" >&2; exit 64 ;;
esac
"#;

/// A fake `systemctl --user`. `enable --now` needs the unit file and starts it;
/// `is-active` succeeds while it runs; `disable --now` stops it.
const SYSTEMCTL: &str = r#"#!/bin/sh
dir="${0%/*}"
echo "systemctl $*" >> "$dir/calls"
[ "$1" = "--user" ] || { echo "not --user" >&2; exit 64; }
shift
if [ -e "$dir/fail-$1" ]; then echo "systemctl: $1 failed on purpose" >&2; exit 1; fi
case "$1" in
  show-environment) echo "SECRET_TOKEN=do-not-print" ;;
  daemon-reload) ;;
  is-active) [ -e "$dir/active" ] ;;
  enable)
    [ -f "$XDG_CONFIG_HOME/systemd/user/$3" ] || { echo "Unit file $3 does not exist." >&2; exit 1; }
    : > "$dir/active" ;;
  restart) [ -e "$dir/active" ] || exit 1 ;;
  disable) /bin/rm -f "$dir/active" ;;
  *) echo "unexpected verb $1" >&2; exit 64 ;;
esac
"#;

/// A home, an XDG config dir, a bin dir for fakes and a config, all in one temp dir.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "xdg", "bin", "conf dir"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("conf dir/klaxon.toml"), CONFIG).unwrap();
        Self { dir }
    }

    fn with_tool(name: &str, script: &str) -> Self {
        let sandbox = Self::new();
        let path = sandbox.bin().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        sandbox
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    fn config(&self) -> PathBuf {
        self.path("conf dir/klaxon.toml").canonicalize().unwrap()
    }

    /// The real binary with only HOME, XDG_CONFIG_HOME and PATH (the fakes) set.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_klaxon"));
        cmd.env_clear()
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("xdg"))
            .env("PATH", self.bin());
        cmd
    }

    /// `klaxon --config CONFIG ARGS…`, run to the end.
    fn klaxon(&self, args: &[&str]) -> Output {
        self.command()
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .expect("run klaxon")
    }

    /// The fake tool's calls since the last look, one a line.
    fn take_calls(&self) -> Vec<String> {
        let calls = std::fs::read_to_string(self.bin().join("calls")).unwrap_or_default();
        let _ = std::fs::remove_file(self.bin().join("calls"));
        calls.lines().map(str::to_owned).collect()
    }

    /// Every file under the sandbox's home and XDG dir.
    fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path("home"), &mut out);
        walk(&self.path("xdg"), &mut out);
        out.sort();
        out
    }
}

mod common;
use common::text;

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

fn binary() -> String {
    Path::new(env!("CARGO_BIN_EXE_klaxon"))
        .canonicalize()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn launchd_install_writes_the_plist_and_bootstraps_it_idempotently() {
    let sb = Sandbox::with_tool("launchctl", LAUNCHCTL);
    let plist = sb.path("home/Library/LaunchAgents/io.klaxon.agent.plist");
    let target = format!("gui/{}/io.klaxon.agent", uid());
    let bootstrap = format!("launchctl bootstrap gui/{} {}", uid(), plist.display());

    let out = sb.klaxon(&["launchd", "install"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        sb.take_calls(),
        [
            format!("launchctl print {target}"),
            format!("launchctl enable {target}"),
            bootstrap.clone(),
        ]
    );
    // Commands are echoed as they run.
    assert!(text(&out.stderr).contains(&format!("$ launchctl enable {target}\n")));
    assert!(sb.path("home/Library/Logs/klaxon").is_dir());
    let first = std::fs::read(&plist).unwrap();
    let value = plist::Value::from_reader_xml(first.as_slice()).unwrap();
    let args = value.as_dictionary().unwrap()["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        args,
        [
            binary(),
            "--config".into(),
            sb.config().to_str().unwrap().to_owned(),
            "run".into()
        ]
    );

    // Again: the loaded agent is booted out first, and the result is the same.
    let out = sb.klaxon(&["launchd", "install"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        sb.take_calls(),
        [
            format!("launchctl print {target}"),
            format!("launchctl bootout {target}"),
            format!("launchctl enable {target}"),
            bootstrap,
        ]
    );
    assert_eq!(std::fs::read(&plist).unwrap(), first);
    assert_eq!(
        sb.files(),
        std::slice::from_ref(&plist),
        "one plist and nothing else (no temp file)"
    );

    let out = sb.klaxon(&["launchd", "uninstall"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        sb.take_calls(),
        [
            format!("launchctl print {target}"),
            format!("launchctl bootout {target}"),
        ]
    );
    assert!(!plist.exists());
    assert!(!sb.bin().join("loaded").exists());

    // Nothing installed: uninstall succeeds and boots out nothing.
    let out = sb.klaxon(&["launchd", "uninstall"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(sb.take_calls(), [format!("launchctl print {target}")]);
    assert!(text(&out.stdout).contains("was not installed"));
}

#[test]
fn launchd_label_names_the_plist_and_the_service() {
    let sb = Sandbox::with_tool("launchctl", LAUNCHCTL);
    let out = sb.klaxon(&["launchd", "install", "--label", "com.example.mon"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let plist = sb.path("home/Library/LaunchAgents/com.example.mon.plist");
    let value = plist::Value::from_file(&plist).unwrap();
    let dict = value.as_dictionary().unwrap();
    assert_eq!(dict["Label"].as_string(), Some("com.example.mon"));
    let log_dir = sb.path("home/Library/Logs/klaxon");
    assert_eq!(
        dict["StandardErrorPath"].as_string().map(PathBuf::from),
        Some(log_dir.join("com.example.mon.err.log"))
    );
    assert_eq!(
        sb.take_calls().last().unwrap(),
        &format!("launchctl bootstrap gui/{} {}", uid(), plist.display())
    );

    let out = sb.klaxon(&["launchd", "install", "--label", "../evil"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("invalid launchd label `../evil`"),
        "{}",
        text(&out.stderr)
    );
    assert!(sb.take_calls().is_empty());
}

#[test]
fn a_failing_launchctl_fails_the_install_with_its_message() {
    let sb = Sandbox::with_tool("launchctl", LAUNCHCTL);
    std::fs::write(sb.bin().join("fail-bootstrap"), "").unwrap();
    let out = sb.klaxon(&["launchd", "install"]);
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: `launchctl bootstrap gui/{} {}` failed",
            uid(),
            sb.path("home/Library/LaunchAgents/io.klaxon.agent.plist")
                .display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("launchctl: bootstrap failed on purpose"),
        "{stderr}"
    );
}

#[test]
fn without_launchctl_install_prints_the_plan_and_writes_nothing() {
    let sb = Sandbox::new();
    for verb in ["install", "uninstall"] {
        let out = sb.klaxon(&["launchd", verb]);
        assert_eq!(code(&out), 1, "{verb}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "error: `launchctl` is not on PATH, so `klaxon launchd {verb}` cannot work here"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "run `launchctl bootout gui/{}/io.klaxon.agent` if yes to \"is the agent loaded?\"",
                uid()
            )),
            "{stderr}"
        );
        assert!(stderr.contains("nothing was changed"), "{stderr}");
    }
    let stderr = text(&sb.klaxon(&["launchd", "install"]).stderr);
    let plist = sb.path("home/Library/LaunchAgents/io.klaxon.agent.plist");
    assert!(
        stderr.contains(&format!("  2. write {}\n", plist.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "  6. run `launchctl bootstrap gui/{} {}`",
            uid(),
            plist.display()
        )),
        "{stderr}"
    );
    assert_eq!(sb.files(), Vec::<PathBuf>::new());
}

#[test]
fn launchd_print_finds_the_config_the_usual_way_and_makes_it_absolute() {
    let sb = Sandbox::new();
    let out = sb
        .command()
        .current_dir(sb.path("conf dir"))
        .args(["launchd", "print"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let value = plist::Value::from_reader_xml(out.stdout.as_slice()).unwrap();
    let args = value.as_dictionary().unwrap()["ProgramArguments"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(args[0].as_string(), Some(binary().as_str()));
    assert_eq!(args[2].as_string(), sb.config().to_str());
}

#[test]
fn service_commands_refuse_a_config_the_service_could_not_load() {
    let sb = Sandbox::new();
    let broken = sb.path("conf dir/klaxon.toml");
    std::fs::write(&broken, "[jobs.x]\nevery = \"soon\"\n").unwrap();
    for manager in ["launchd", "systemd"] {
        let out = sb.klaxon(&[manager, "print"]);
        assert_eq!(code(&out), 2, "{manager}");
        assert!(
            text(&out.stderr).contains("klaxon.toml:2:"),
            "{}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }

    // A variable from the shell that the service will not have.
    std::fs::write(
        &broken,
        CONFIG.replace(
            "type = \"log\"",
            "type = \"webhook\"\nurl = \"${KLAXON_TEST_HOOK}\"",
        ),
    )
    .unwrap();
    let out = sb
        .command()
        .env("KLAXON_TEST_HOOK", "https://hooks.example/canary-secret")
        .arg("--config")
        .arg(sb.config())
        .args(["systemd", "print"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`KLAXON_TEST_HOOK` is not set"), "{stderr}");
    assert!(
        stderr.contains("loads in this shell but not as a systemd service"),
        "{stderr}"
    );
    assert!(stderr.contains("agent.env_file"), "{stderr}");
    assert!(!stderr.contains("canary-secret"), "{stderr}");
}

#[test]
fn systemd_install_enables_the_unit_and_restarts_it_when_installed_again() {
    let sb = Sandbox::with_tool("systemctl", SYSTEMCTL);
    let unit = sb.path("xdg/systemd/user/klaxon.service");

    let out = sb.klaxon(&["systemd", "install"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let install = [
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        "systemctl --user is-active --quiet klaxon.service",
        "systemctl --user enable --now klaxon.service",
    ];
    assert_eq!(sb.take_calls(), install);
    let first = std::fs::read_to_string(&unit).unwrap();
    assert!(
        first.contains(&format!("\nExecStart={} --config \"", binary())),
        "{first}"
    );
    assert!(first.contains("/conf dir/klaxon.toml\" run\n"), "{first}");
    // What systemctl printed (the user manager's environment) is never echoed.
    assert!(!text(&out.stderr).contains("do-not-print"));
    assert!(!text(&out.stdout).contains("do-not-print"));
    assert!(text(&out.stdout).contains("loginctl enable-linger"));

    let out = sb.klaxon(&["systemd", "install"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // Already running: restarted, so a changed unit takes effect.
    assert_eq!(
        sb.take_calls(),
        [&install[..], &["systemctl --user restart klaxon.service"]].concat()
    );
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), first);
    assert_eq!(sb.files(), std::slice::from_ref(&unit));

    let out = sb.klaxon(&["systemd", "uninstall"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        sb.take_calls(),
        [
            "systemctl --user disable --now klaxon.service",
            "systemctl --user daemon-reload",
        ]
    );
    assert!(!unit.exists());
    assert!(!sb.bin().join("active").exists());

    let out = sb.klaxon(&["systemd", "uninstall"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(sb.take_calls().is_empty());
    assert!(text(&out.stdout).contains("was not installed"));
}

#[test]
fn systemd_install_without_a_user_manager_writes_nothing() {
    let sb = Sandbox::with_tool("systemctl", SYSTEMCTL);
    std::fs::write(sb.bin().join("fail-show-environment"), "").unwrap();
    let out = sb.klaxon(&["systemd", "install"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("systemctl: show-environment failed on purpose"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sb.files(), Vec::<PathBuf>::new());

    std::fs::remove_file(sb.bin().join("fail-show-environment")).unwrap();
    std::fs::write(sb.bin().join("fail-enable"), "").unwrap();
    let out = sb.klaxon(&["systemd", "install"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains(
            "error: `systemctl --user enable --now klaxon.service` failed (exit status: 1): \
             systemctl: enable failed on purpose"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn without_systemctl_install_prints_the_plan_and_writes_nothing() {
    let sb = Sandbox::new();
    let out = sb.klaxon(&["systemd", "install"]);
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "error: `systemctl` is not on PATH, so `klaxon systemd install` cannot work here"
        ),
        "{stderr}"
    );
    let unit = sb.path("xdg/systemd/user/klaxon.service");
    assert!(
        stderr.contains(&format!("  2. write {}\n", unit.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("  5. run `systemctl --user enable --now klaxon.service`\n"),
        "{stderr}"
    );
    assert_eq!(sb.files(), Vec::<PathBuf>::new());
}

#[test]
fn systemd_print_escapes_a_config_path_with_a_space_and_a_percent() {
    let sb = Sandbox::new();
    let odd = sb.path("conf dir/100% $HOME.toml");
    std::fs::write(&odd, CONFIG).unwrap();
    let out = sb
        .command()
        .arg("--config")
        .arg(&odd)
        .args(["systemd", "print"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let unit = text(&out.stdout);
    let dir = sb.path("conf dir").canonicalize().unwrap();
    assert!(
        unit.contains(&format!(
            "\nExecStart={} --config \"{}/100%% $$HOME.toml\" run\n",
            binary(),
            dir.display()
        )),
        "{unit}"
    );
}
