//! State and log files are private whatever the umask (through the real binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod common;
use common::text;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `klaxon once t` on `config`, started under umask 022.
fn once_under_umask_022(config: &Path) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_klaxon");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec '{bin}' --config '{}' once t",
            config.display()
        ))
        .env_remove("KLAXON_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn under_umask_022_the_state_dir_is_0700_and_its_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("klaxon.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[jobs.t]\nevery = \"1h\"\n[jobs.t.check]\ntype = \"script\"\nshell = \"true\"\n",
            state.display()
        ),
    )
    .unwrap();
    let out = once_under_umask_022(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(mode(&state), 0o700, "the loose state dir was tightened");
    assert!(
        text(&out.stderr).contains("0755"),
        "a warning names the old mode: {}",
        text(&out.stderr)
    );
    let db = state.join("klaxon.db");
    assert_eq!(mode(&db), 0o600);
    for side in ["klaxon.db-wal", "klaxon.db-shm"] {
        let p = state.join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
}

/// `[log] file` under umask 022: the log directory klaxon creates is 0700 and the dated
/// log file 0600, through `klaxon once` as through the agent.
#[test]
fn under_umask_022_the_log_directory_is_0700_and_the_log_file_0600() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let config = dir.path().join("klaxon.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[log]\nfile = \"{}\"\n[jobs.t]\nevery = \"1h\"\n[jobs.t.check]\ntype = \"script\"\nshell = \"true\"\n",
            dir.path().join("state").display(),
            logs.join("klaxon.log").display()
        ),
    )
    .unwrap();
    let out = once_under_umask_022(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(mode(&logs), 0o700, "the log directory klaxon made");
    let dated: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.is_symlink())
        .collect();
    assert_eq!(dated.len(), 1, "{dated:?}");
    let name = dated[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("klaxon.") && name.ends_with(".log"),
        "{name}"
    );
    assert_eq!(mode(&dated[0]), 0o600, "{name}");
    let written = std::fs::read_to_string(&dated[0]).unwrap();
    assert!(written.contains("ok: "), "the run was logged: {written}");
}
