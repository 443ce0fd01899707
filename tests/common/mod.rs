//! What the tests of the binary share: the real `klaxon` with none of the caller's
//! `KLAXON_CONFIG` or `RUST_LOG`, and its output as text.
// Each test file is a crate of its own and uses only some of these.
#![allow(dead_code, clippy::expect_used)]

use std::process::{Command, Output};

/// The real binary, not steered by the environment the tests run in.
pub fn klaxon() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_klaxon"));
    cmd.env_remove("KLAXON_CONFIG").env_remove("RUST_LOG");
    cmd
}

/// `cmd` (the binary, with its environment) as `--config CONFIG ARGS`, which must exit
/// 0; its stdout.
pub fn stdout_of(mut cmd: Command, config: &std::path::Path, args: &[&str]) -> String {
    let out = cmd
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run klaxon");
    assert!(
        out.status.success(),
        "klaxon {args:?} exited {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Starts `cmd` (the binary, with `--config`) as `run`, its stderr written to `log`.
pub fn spawn_run(mut cmd: Command, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::File::create(log).expect("create the agent's log");
    cmd.arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start klaxon run")
}

/// The address an agent's log says its listener is `listening on`, if it says yet.
pub fn listening_on(log: &str) -> Option<std::net::SocketAddr> {
    let after = log.split("listening on ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Runs `cmd` to the end without blocking the test's runtime.
pub async fn output(cmd: Command) -> Output {
    tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run klaxon")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Processes whose process group is `group` and that are not zombies (a zombie is
/// dead, waiting for whoever adopted it to reap it).
pub fn live_members(group: u32) -> usize {
    let mut live = 0;
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces, so split after `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2) == Some(&group.to_string().as_str()) && fields[0] != "Z" {
            live += 1;
        }
    }
    live
}
