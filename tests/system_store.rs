//! The state store on a filesystem that fills up: a 4 MB tmpfs mounted under the state
//! directory (needs root; `.ci/run` runs this suite as root). `/healthz` turns 503 and
//! names the reason while the store cannot be written, and 200 again once it can.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::klaxon;

/// A tmpfs mounted at a path, lazily unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this suite mounts a tmpfs and needs root (run it as root, as .ci/run does)"
        );
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Self(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Agent(std::process::Child, PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

async fn healthz(client: &reqwest::Client, base: &str) -> (u16, String) {
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn wait_health(
    client: &reqwest::Client,
    base: &str,
    agent: &Agent,
    want: impl Fn(u16, &str) -> bool,
    what: &str,
) -> String {
    // The probe runs every 30 s: two of its turns and some.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = healthz(client, base).await;
        if want(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /healthz still says {status} {body}\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_store_turns_healthz_503_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::tmpfs(&dir.path().join("disk"), "4m");
    let state = mount.0.join("state");
    let config = dir.path().join("klaxon.toml");
    // A run a second, each with 20 kB of output: the WAL needs new pages all the time.
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"ci\"\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n\
             [jobs.busy]\nevery = \"1s\"\n[jobs.busy.check]\ntype = \"script\"\n\
             shell = \"head -c 20000 /dev/urandom | base64; exit 2\"\n",
            state.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let child = klaxon()
        .env("RUST_LOG", "klaxon=info")
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent(child, log);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let base = loop {
        let text = agent.log();
        if let Some(addr) = text.split("listening on ").nth(1) {
            break format!("http://{}", addr.split_whitespace().next().unwrap());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no listener:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = reqwest::Client::new();
    wait_health(
        &client,
        &base,
        &agent,
        |s, _| s == 200,
        "before the disk fills",
    )
    .await;

    // Fill the disk up.
    let filler = mount.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status()
        .expect("run dd");
    let body = wait_health(
        &client,
        &base,
        &agent,
        |s, b| s == 503 && b.contains("cannot write its state"),
        "with the disk full",
    )
    .await;
    eprintln!("/healthz with the disk full: {body}");
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    assert!(
        body.to_lowercase().contains("full"),
        "the reason names the full disk: {body}"
    );

    // Space again: the next run's commit succeeds and health comes back.
    std::fs::remove_file(&filler).unwrap();
    wait_health(
        &client,
        &base,
        &agent,
        |s, _| s == 200,
        "after space came back",
    )
    .await;
    drop(agent);
    drop(mount);
}
