//! `klaxon open` through the binary, with a fake `xdg-open` (and `open`, macOS's) on
//! PATH: a real child process that records the URL it was given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

mod common;

/// A directory with an executable `xdg-open` and `open` that write their arguments to
/// `opened` beside them.
fn opener(dir: &Path, exit: i32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.join("opened");
    for name in ["xdg-open", "open"] {
        let script = bin.join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexit {exit}\n",
                record.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn open(dir: &Path, agent: &str, path: &Path) -> Output {
    std::fs::write(
        dir.join("klaxon.toml"),
        format!("[agent]\n{agent}\n[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1m\"\n"),
    )
    .unwrap();
    common::klaxon()
        .env("PATH", path)
        .arg("--config")
        .arg(dir.join("klaxon.toml"))
        .arg("open")
        .output()
        .unwrap()
}

fn opened(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("opened")).unwrap_or_default()
}

#[test]
fn open_hands_the_page_to_the_browser_and_prints_it() {
    for (listen, url) in [
        ("127.0.0.1:18377", "http://127.0.0.1:18377/"),
        ("0.0.0.0:18377", "http://127.0.0.1:18377/"),
        ("[::]:18377", "http://[::1]:18377/"),
        ("[::1]:18377", "http://[::1]:18377/"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bin = opener(dir.path(), 0);
        let out = open(dir.path(), &format!("listen = \"{listen}\""), &bin);
        let stdout = common::text(&out.stdout);
        let stderr = common::text(&out.stderr);
        assert!(out.status.success(), "{listen}: {stdout}{stderr}");
        assert_eq!(stdout, format!("dashboard: {url}\n"), "{listen}");
        assert_eq!(opened(dir.path()), format!("{url}\n"), "{listen}");
        // Nothing listens there in this test: `open` says so, and opens the page anyway.
        assert!(stderr.contains("nothing answers on"), "{stderr}");
    }
}

#[test]
fn open_says_when_there_is_no_listener_or_no_opener() {
    let dir = tempfile::tempdir().unwrap();
    let bin = opener(dir.path(), 0);
    let out = open(dir.path(), "name = \"box\"", &bin);
    assert_eq!(out.status.code(), Some(2));
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains("`agent.listen` is not set"), "{stderr}");
    assert_eq!(opened(dir.path()), "", "opened without a listener");

    let out = open(dir.path(), "listen = \"127.0.0.1:0\"", &bin);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::text(&out.stderr).contains("port 0"));

    // No opener on PATH: an error naming it, and the address to open by hand.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = open(dir.path(), "listen = \"127.0.0.1:18377\"", &empty);
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::text(&out.stderr);
    let name = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    assert!(
        stderr.contains(&format!(
            "`{name}` is not installed (not on PATH); open http://127.0.0.1:18377/ yourself"
        )),
        "{stderr}"
    );

    // An opener that fails is an error too.
    let failing = tempfile::tempdir().unwrap();
    let bin = opener(failing.path(), 3);
    let out = open(failing.path(), "listen = \"127.0.0.1:18377\"", &bin);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::text(&out.stderr).contains("failed (exit status: 3)"));
    assert_eq!(opened(failing.path()), "http://127.0.0.1:18377/\n");
}
