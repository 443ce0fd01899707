//! Checks stuck on a dead filesystem: a FUSE mount whose `statfs` never answers
//! (tests/fixtures/hung_fs.py, like a dead NFS or SMB share). Needs root and /dev/fuse
//! (`.ci/run` runs this suite as root, after installing fuse3 and python3-fusepy).
//! Other jobs' alerts still go out at once, a stuck `disk` job records `still stuck in
//! statfs since …` once instead of a thread per fire, and the agent stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use klaxon_testkit::{Response, Server};

mod common;
use common::klaxon;

const DISK_JOBS: usize = 6;

/// The hung filesystem's server; killing it (on drop) aborts the calls stuck in it,
/// and the mount is then lazily unmounted.
struct HungMount {
    server: Child,
    at: PathBuf,
}

impl HungMount {
    fn start(at: &Path) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this suite mounts a FUSE filesystem and needs root (run it as root, as .ci/run does)"
        );
        std::fs::create_dir_all(at).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hung_fs.py");
        // Debian's python3-fusepy is installed for the system's python.
        let server = Command::new("/usr/bin/python3")
            .arg(&fixture)
            .arg(at)
            .stdout(Stdio::null())
            .spawn()
            .expect("run /usr/bin/python3 tests/fixtures/hung_fs.py (apt-get install fuse3 python3-fusepy)");
        let mut mount = Self {
            server,
            at: at.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !mount.mounted() {
            if let Ok(Some(status)) = mount.server.try_wait() {
                panic!("the FUSE server exited with {status} before mounting");
            }
            assert!(
                Instant::now() < deadline,
                "the FUSE filesystem was not mounted"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        mount
    }

    fn mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let at = self.at.display().to_string();
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(at.as_str()) && l.contains(" - fuse"))
    }

    fn kill(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        if self.mounted() {
            let _ = Command::new("fusermount")
                .arg("-u")
                .arg(&self.at)
                .stderr(Stdio::null())
                .status();
        }
        if self.mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Agent(Child, PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        // Not waited for: threads stuck in the FUSE mount keep the process from ending
        // until the mount's server is killed, which comes after.
        let _ = self.0.kill();
        let _ = self.0.try_wait();
    }
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

fn history(config: &Path, job: &str) -> Vec<serde_json::Value> {
    let out = klaxon()
        .arg("--config")
        .arg(config)
        .args(["history", job, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "history {job}: {out:?}");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_stuck_in_statfs_do_not_delay_another_jobs_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut mount = HungMount::start(&dir.path().join("dead-share"));
    let hook = Server::start(|_| Response::ok("ok")).await;
    let flag = dir.path().join("fail-now");
    let mut config_text = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"{}\"\ngroup_wait = \"0s\"\n\
         [defaults]\nretry = {{ attempts = 1 }}\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
         [jobs.bad]\nevery = \"1s\"\nnotify = [\"hook\"]\n[jobs.bad.check]\ntype = \"script\"\n\
         shell = \"test ! -e {}\"\n",
        dir.path().join("state").display(),
        hook.url("/"),
        flag.display()
    );
    for i in 1..=DISK_JOBS {
        config_text.push_str(&format!(
            "[jobs.disk{i}]\nevery = \"1s\"\ntimeout = \"1s\"\n[jobs.disk{i}.check]\n\
             type = \"disk\"\npath = \"{}\"\nmin_free = \"1%\"\n",
            mount.at.display()
        ));
    }
    let config = dir.path().join("klaxon.toml");
    std::fs::write(&config, config_text).unwrap();
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

    // Every disk job is stuck: each has timed out at least once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stuck = (1..=DISK_JOBS)
            .filter(|i| {
                history(&config, &format!("disk{i}"))
                    .iter()
                    .any(|r| r["summary"].as_str().unwrap_or("").contains("timed out"))
            })
            .count();
        if stuck == DISK_JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {stuck} of {DISK_JOBS} disk jobs timed out:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few more fires of each stuck job.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Now another job fails: its DOWN goes out as fast as with no stuck checks (a run a
    // second and no group wait: well under the generous bound).
    assert!(hook.requests().is_empty(), "nothing failed yet");
    std::fs::write(&flag, "").unwrap();
    let failed_at = Instant::now();
    while hook.requests().is_empty() {
        assert!(
            failed_at.elapsed() < Duration::from_secs(10),
            "the failing job's DOWN was not sent within 10 s while checks are stuck in statfs:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "DOWN sent {:?} after the job started failing",
        failed_at.elapsed()
    );

    // Each stuck job said so once, not once per fire.
    for i in 1..=DISK_JOBS {
        let runs = history(&config, &format!("disk{i}"));
        let stuck: Vec<&serde_json::Value> = runs
            .iter()
            .filter(|r| {
                r["summary"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("still stuck in statfs since ")
            })
            .collect();
        assert_eq!(stuck.len(), 1, "disk{i}: {runs:#?}");
        assert_eq!(stuck[0]["severity"], "critical", "disk{i}: {:#?}", stuck[0]);
    }

    // SIGTERM: the agent winds down while the calls are still stuck...
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    while !agent.log().contains("klaxon stopped") {
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "the agent did not stop with checks stuck:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and its threads stuck in the kernel end when the FUSE server dies, which
    // aborts their calls: the process then exits with success.
    mount.kill();
    let mut agent = agent;
    let exited = Instant::now();
    let status = loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            exited.elapsed() < Duration::from_secs(10),
            "the agent did not exit after the FUSE server was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "agent exited with {status}:\n{}",
        agent.log()
    );
}
