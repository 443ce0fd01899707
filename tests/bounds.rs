//! Memory stays bounded whatever a check's target does. Its own test binary, so that the
//! peak memory of finished children (`getrusage(RUSAGE_CHILDREN)`) is klaxon's alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use nix::sys::resource::{UsageWho, getrusage};

#[test]
fn a_script_printing_a_gigabyte_keeps_klaxon_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("klaxon.toml");
    std::fs::write(
        &path,
        "[agent]\nstate_dir = \"state\"\n[jobs.flood]\nevery = \"1h\"\ntimeout = \"2m\"\n[jobs.flood.check]\ntype = \"script\"\nshell = \"yes 'flood of output' | head -c 1000000000\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_klaxon"))
        .arg("--config")
        .arg(&path)
        .args(["once", "flood", "--no-retry"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("flood: ok: flood of output"), "{stdout}");
    // ru_maxrss is in KiB on Linux. A gigabyte went through; klaxon kept 64 KiB of it.
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(
        peak_kib < 64 * 1024,
        "klaxon's peak RSS was {} MiB while a script printed 1 GB",
        peak_kib / 1024
    );
}
