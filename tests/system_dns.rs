//! The `dns` check through the built binary against a real DNS server: dnsmasq
//! (Debian's `dnsmasq-base`) on a loopback port, serving A, AAAA, MX and TXT records for
//! `ok.test` and NXDOMAIN for other names under `test`. `.ci/run` installs the package
//! and runs this suite with `cargo test -p klaxon --features system-tests --test
//! system_dns`; without dnsmasq it fails and says how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::text;

/// dnsmasq, killed (and reaped) when dropped.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dnsmasq() -> Dnsmasq {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let user = if nix_is_root() { "root" } else { "" };
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--host-record=ok.test,10.0.0.1,fd00::1",
        "--mx-host=ok.test,mail.ok.test,10",
        "--txt-record=ok.test,v=spf1 -all",
        // Names under `test` are answered here: what is not listed does not exist.
        "--local=/test/",
    ])
    .arg(format!("--port={port}"))
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if !user.is_empty() {
        cmd.arg(format!("--user={user}"));
    }
    let child = cmd
        .spawn()
        .expect("dnsmasq is not installed: `apt-get install dnsmasq-base`");
    let server = Dnsmasq { child, port };
    // Ready once it accepts TCP on its port (it listens on UDP from the same moment).
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("dnsmasq did not start on port {port}");
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn job(name: &str, server: u16, check: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"1h\"\n[jobs.{name}.check]\ntype = \"dns\"\n\
         server = \"127.0.0.1:{server}\"\n{check}\n"
    )
}

fn once(config: &Path, name: &str) -> (i32, String) {
    let out = common::klaxon()
        .arg("--config")
        .arg(config)
        .args(["once", name, "--no-retry"])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

#[test]
fn dns_checks_ask_a_real_dnsmasq() {
    let server = dnsmasq();
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let jobs = [
        job("a", port, "name = \"ok.test\"\nexpect = [\"10.0.0.1\"]"),
        job(
            "aaaa",
            port,
            "name = \"ok.test\"\nrecord = \"AAAA\"\nexpect = [\"FD00:0::1\"]",
        ),
        job(
            "mx",
            port,
            "name = \"ok.test\"\nrecord = \"MX\"\nexpect = [\"10 mail.ok.test.\"]",
        ),
        job(
            "txt",
            port,
            "name = \"ok.test\"\nrecord = \"TXT\"\nexpect = [\"v=spf1 -all\"]",
        ),
        job("tcp", port, "name = \"ok.test\"\nprotocol = \"tcp\""),
        job(
            "missing",
            port,
            "name = \"ok.test\"\nexpect = [\"10.0.0.9\"]",
        ),
        job("nx", port, "name = \"nope.test\""),
    ];
    let config = dir.path().join("klaxon.toml");
    std::fs::write(
        &config,
        format!("[agent]\nstate_dir = \"state\"\n{}", jobs.concat()),
    )
    .unwrap();
    for (name, code, lead) in [
        ("a", 0, "a: ok: ok.test A 10.0.0.1 in "),
        ("aaaa", 0, "aaaa: ok: ok.test AAAA fd00::1 in "),
        ("mx", 0, "mx: ok: ok.test MX 10 mail.ok.test in "),
        ("txt", 0, "txt: ok: ok.test TXT v=spf1 -all in "),
        ("tcp", 0, "tcp: ok: ok.test A 10.0.0.1 in "),
        (
            "missing",
            1,
            "missing: critical: ok.test A lacks 10.0.0.9; answers: 10.0.0.1",
        ),
        ("nx", 1, "nx: critical: NXDOMAIN: nope.test does not exist"),
    ] {
        let (got, stdout) = once(&config, name);
        assert_eq!(got, code, "{name}: {stdout}");
        assert!(stdout.starts_with(lead), "{name}: {stdout}");
        assert!(
            stdout.contains("time="),
            "{name}: no `time` metric: {stdout}"
        );
    }
    drop(server);
    // The server is gone: nothing answers, the query times out.
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"state\"\n[jobs.a]\nevery = \"1h\"\ntimeout = \"500ms\"\n\
             [jobs.a.check]\ntype = \"dns\"\nserver = \"127.0.0.1:{port}\"\nname = \"ok.test\"\n"
        ),
    )
    .unwrap();
    let (got, stdout) = once(&config, "a");
    assert_eq!(got, 1, "{stdout}");
    assert!(stdout.starts_with("a: critical: "), "{stdout}");
}

/// The agent runs a `dns` job on its schedule: a name that does not exist alerts, with
/// the server's answer in the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_alerts_on_nxdomain() {
    use klaxon_testkit::{Response, Server};
    let server = dnsmasq();
    let hook = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("klaxon.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"ci\"\nstate_dir = \"state\"\n\
             [notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
             [jobs.gone]\nevery = \"1s\"\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n\
             [jobs.gone.check]\ntype = \"dns\"\nserver = \"127.0.0.1:{}\"\nname = \"gone.test\"\n",
            hook.url("/hook"),
            server.port
        ),
    )
    .unwrap();
    let mut agent = common::klaxon()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let alert = got[0].json();
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(
        alert["summary"], "NXDOMAIN: gone.test does not exist",
        "{alert}"
    );
    assert_eq!(
        alert["check"]["target"],
        format!("gone.test A @127.0.0.1:{}", server.port)
    );
}
