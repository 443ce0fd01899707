//! How `klaxon run` stops while a script runs, through the real binary: the first signal
//! gives the script's process group SIGTERM and, 2 s later, SIGKILL; a second signal
//! SIGKILLs every group at once and exits. Either way no process of the group is left,
//! and the run cut short is recorded as `interrupted`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod common;
use common::{klaxon, live_members, text};

/// A temp dir with a config whose one job runs a shell line at start, and its agent.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// `shell` makes the line from a function giving files in the temp dir, quoted.
    fn new(shell: impl FnOnce(&dyn Fn(&str) -> String) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| format!("'{}'", dir.path().join(name).display());
        let shell = shell(&file);
        let config = format!(
            r#"[agent]
name = "ci"
state_dir = "state"

[jobs.slow]
every = "1h"
timeout = "1m"
retry = {{ attempts = 1 }}
[jobs.slow.check]
type = "script"
shell = "{}"
"#,
            shell.replace('\\', "\\\\").replace('"', "\\\"")
        );
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `klaxon --config … ARGS…`, its stderr in `log`.
    fn spawn(&self, args: &[&str]) -> Agent {
        let child = klaxon()
            .arg("--config")
            .arg(self.path("klaxon.toml"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("log")).unwrap())
            .spawn()
            .expect("start klaxon");
        Agent {
            child,
            log: self.path("log"),
        }
    }

    /// The script's process group, once it has written it to `group`.
    fn group(&self, agent: &Agent) -> u32 {
        let file = self.path("group");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(group) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return group;
            }
            assert!(
                Instant::now() < deadline,
                "the script never started:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn history(&self) -> serde_json::Value {
        let out = klaxon()
            .arg("--config")
            .arg(self.path("klaxon.toml"))
            .args(["history", "slow", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A running `klaxon run` (or `once`), killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (at most 20 s) for it to exit: its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "klaxon did not exit within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 3 s, for the orphans to be reaped) until nothing of `group` is left.
fn assert_group_gone(group: u32, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while live_members(group) > 0 {
        if Instant::now() > deadline {
            // Do not leave them behind for the next test either.
            let _ = nix::sys::signal::killpg(Pid::from_raw(group as i32), Signal::SIGKILL);
            panic!(
                "processes of the script's group {group} outlived the agent:\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_interrupted(history: &serde_json::Value) {
    let runs = history.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["skipped"], "interrupted", "{runs:#?}");
    assert_eq!(
        runs[0]["summary"], "interrupted by shutdown during try 1 of 1",
        "{runs:#?}"
    );
}

/// A script that ignores TERM, as does the `sleep` it starts (ignored signals are
/// inherited).
fn ignoring_term(file: &dyn Fn(&str) -> String) -> String {
    format!("trap '' TERM; sleep 60 & echo $$ > {}; wait", file("group"))
}

/// Starts `klaxon ARGS…` on the setup's config, waits for its script to start, sends it
/// `signals` one right after the other, and waits for it to exit; checks that nothing
/// of the script's group is left. Returns the exit code and how long the exit took.
fn signalled(setup: &Setup, args: &[&str], signals: &[Signal]) -> (i32, Duration, String) {
    let mut klaxon = setup.spawn(args);
    let group = setup.group(&klaxon);
    let asked = Instant::now();
    for &signal in signals {
        klaxon.signal(signal);
    }
    let code = klaxon.exit_code();
    let took = asked.elapsed();
    assert_group_gone(group, &klaxon);
    (code, took, klaxon.log())
}

/// The script traps TERM: it hears it, writes so, and exits; its background `sleep` is
/// in the group and gets the TERM too. The agent exits well before its 10 s grace.
#[test]
fn the_first_signal_gives_a_running_script_sigterm() {
    let setup = Setup::new(|file| {
        format!(
            "trap 'echo term > {}; exit 0' TERM; sleep 60 & echo $$ > {}; wait",
            file("got"),
            file("group")
        )
    });
    let (code, took, log) = signalled(&setup, &["run"], &[Signal::SIGTERM]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read_to_string(setup.path("got")).ok().as_deref(),
        Some("term\n"),
        "the script never got SIGTERM:\n{log}"
    );
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} to stop:\n{log}"
    );
    assert_interrupted(&setup.history());
}

/// The script ignores TERM (and so does its `sleep`): 2 s after the SIGTERM the group is
/// SIGKILLed, and the agent exits.
#[test]
fn a_script_that_ignores_sigterm_is_killed_two_seconds_later() {
    let setup = Setup::new(ignoring_term);
    let (code, took, log) = signalled(&setup, &["run"], &[Signal::SIGTERM]);
    assert_eq!(code, 0, "{log}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "exited {took:?} after SIGTERM, not about 2 s:\n{log}"
    );
    assert_interrupted(&setup.history());
}

/// SIGTERM, then at once SIGINT: the agent does not wait out the script's grace; it
/// SIGKILLs the group and exits 130, leaving nothing behind.
#[test]
fn a_second_signal_kills_every_group_and_exits_at_once() {
    let setup = Setup::new(ignoring_term);
    let (code, took, log) = signalled(&setup, &["run"], &[Signal::SIGTERM, Signal::SIGINT]);
    assert_eq!(code, 130, "{log}");
    assert!(
        took < Duration::from_millis(1500),
        "took {took:?}: the second signal waited for the script's grace:\n{log}"
    );
}

/// `klaxon once` gets SIGINT while its script (which ignores TERM) runs: the group gets
/// SIGTERM, then SIGKILL 2 s later; the run is `interrupted`; once exits 130.
#[test]
fn once_interrupted_stops_its_script_and_records_it() {
    let setup = Setup::new(ignoring_term);
    let (code, took, log) = signalled(&setup, &["once", "slow"], &[Signal::SIGINT]);
    assert_eq!(code, 130, "{log}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "exited {took:?} after SIGINT, not about 2 s:\n{log}"
    );
    assert_interrupted(&setup.history());
}
