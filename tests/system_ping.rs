//! The `ping` check through `klaxon once`, as root: with `net.ipv4.ping_group_range`
//! set to allow no group the run names the sysctl, and with it allowing all, loopback
//! (IPv4 and IPv6) answers; then against a network namespace this suite creates (a veth
//! pair): one address dropping ICMP (nftables), one dropping every other echo request
//! (an nftables counter: deterministic loss), and random loss of half the requests on
//! the link, judged with a binomial margin. The random loss is `tc netem` where the
//! kernel has sch_netem and nftables' `numgen random` on the same veth where it does not
//! (this project's CI kernel has no netem); either way the case runs and asserts, and
//! the test prints which mechanism it used. `.ci/run` installs iproute2 and nftables and runs it with
//! `cargo test -p klaxon --features system-tests --test system_ping`. The sysctl and the
//! namespace are restored and removed however the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod common;
use common::text;

const RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Runs a system program, failing with what it said.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{program}`: {e} (install iproute2 and nftables; .ci/run does this)")
        });
    assert!(
        out.status.success(),
        "`{program} {}`: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Puts `ping_group_range` back as it was.
struct Range(String);

impl Range {
    fn set(&self, value: &str) {
        std::fs::write(RANGE, value).unwrap();
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        let _ = std::fs::write(RANGE, &self.0);
    }
}

/// A network namespace with one end of a veth pair, removed on drop.
struct Netns {
    name: String,
    veth: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
    }
}

fn once(dir: &Path, jobs: &str, job: &str) -> (Option<i32>, String) {
    let path = dir.join("klaxon.toml");
    std::fs::write(
        &path,
        format!("[agent]\nname = \"ci\"\nstate_dir = \"state\"\n{jobs}"),
    )
    .unwrap();
    let out = common::klaxon()
        .arg("--config")
        .arg(&path)
        .args(["once", job, "--no-retry"])
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout) + &text(&out.stderr))
}

fn ping_job(name: &str, keys: &str) -> String {
    format!("[jobs.{name}]\nevery = \"1m\"\n[jobs.{name}.check]\ntype = \"ping\"\n{keys}\n")
}

#[test]
fn ping_needs_no_root_and_judges_loss_on_a_real_link() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this suite needs root (to set the sysctl and make a network namespace)"
    );
    let dir = tempfile::tempdir().unwrap();
    let range = Range(std::fs::read_to_string(RANGE).unwrap());

    // Forbidden: the result names the fix.
    range.set("1 0");
    let loopback = ping_job("lo4", "host = \"127.0.0.1\"\ninterval = \"50ms\"");
    let (code, out) = once(dir.path(), &loopback, "lo4");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("lo4: critical: ICMP: unprivileged ping is not allowed")
            && out.contains("`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`"),
        "{out}"
    );

    // Allowed: loopback answers, with the round trips and loss as perfdata.
    range.set("0 2147483647");
    let (code, out) = once(dir.path(), &loopback, "lo4");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("lo4: ok: 3 of 3 replies from 127.0.0.1, rtt min/avg/max "),
        "{out}"
    );
    for label in ["rtt_min=", "rtt_avg=", "rtt_max=", "loss=0%;20;60;0;100"] {
        assert!(out.contains(&format!("\n  {label}")), "{label}: {out}");
    }
    let (code, out) = once(
        dir.path(),
        &ping_job("lo6", "host = \"::1\"\nip = \"v6\"\ninterval = \"50ms\""),
        "lo6",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("lo6: ok: 3 of 3 replies from ::1"), "{out}");

    // A host in a network namespace behind a veth pair.
    let id = std::process::id() % 10_000;
    let net = format!("10.213.{}", id % 250);
    let ns = Netns {
        name: format!("klx-ping-{id}"),
        veth: format!("kxa{id}"),
    };
    let peer = format!("kxb{id}");
    sh("ip", &["netns", "add", &ns.name]);
    sh(
        "ip",
        &[
            "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
        ],
    );
    sh("ip", &["link", "set", &peer, "netns", &ns.name]);
    sh(
        "ip",
        &["addr", "add", &format!("{net}.1/24"), "dev", &ns.veth],
    );
    sh("ip", &["link", "set", &ns.veth, "up"]);
    // One command line in the namespace, split at spaces (nft joins its arguments).
    let in_ns = |line: &str| {
        let mut all = vec!["netns", "exec", ns.name.as_str()];
        all.extend(line.split_whitespace());
        sh("ip", &all)
    };
    for host in 2..=4 {
        in_ns(&format!("ip addr add {net}.{host}/24 dev {peer}"));
    }
    in_ns(&format!("ip link set {peer} up"));
    in_ns("ip link set lo up");
    // `.3` drops ICMP; `.4` drops every other echo request (a counter, not chance).
    in_ns("nft add table inet klaxon");
    in_ns(
        "nft add chain inet klaxon input { type filter hook input priority 0 ; policy accept ; }",
    );
    in_ns(&format!(
        "nft add rule inet klaxon input ip daddr {net}.3 icmp type echo-request drop"
    ));
    in_ns(&format!(
        "nft add rule inet klaxon input ip daddr {net}.4 icmp type echo-request numgen inc mod 2 == 1 drop"
    ));

    let jobs = [
        ping_job("up", &format!("host = \"{net}.2\"\ninterval = \"50ms\"")),
        ping_job(
            "dropped",
            &format!("host = \"{net}.3\"\ninterval = \"50ms\""),
        ),
        ping_job(
            "lossy",
            &format!("host = \"{net}.4\"\ncount = 4\ninterval = \"50ms\""),
        ),
    ]
    .concat();
    let (code, out) = once(dir.path(), &jobs, "up");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("up: ok: 3 of 3 replies from {net}.2")),
        "{out}"
    );

    let (code, out) = once(dir.path(), &jobs, "dropped");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(&format!(
            "dropped: critical: no reply from {net}.3 (3 sent)"
        )),
        "{out}"
    );
    assert!(out.contains("\n  loss=100%"), "{out}");

    let (code, out) = once(dir.path(), &jobs, "lossy");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(&format!(
            "lossy: warning: 50% loss (warn 20%): 2 of 4 replies from {net}.4"
        )),
        "{out}"
    );
    assert!(out.contains("\n  loss=50%"), "{out}");

    // Random loss on the link: `tc netem` on the host's end of the veth where the kernel
    // has it (CONFIG_NET_SCH_NETEM), otherwise nftables on the namespace's end
    // (`numgen random`), each dropping an echo request with chance 1/2. Of 40 requests,
    // 5 to 35 get through except with chance 2·10^-7 (binomial), and any loss from 1 to
    // 39 is the same verdict: a warning (`warn_loss = 0%`, `max_loss = 99%`).
    let netem = Command::new("tc")
        .args([
            "qdisc", "add", "dev", &ns.veth, "root", "netem", "loss", "50%",
        ])
        .output()
        .unwrap_or_else(|e| panic!("`tc`: {e} (install iproute2; .ci/run does this)"));
    let mechanism = if netem.status.success() {
        "tc netem loss 50%".to_owned()
    } else {
        in_ns(&format!(
            "nft add rule inet klaxon input iifname {peer} ip daddr {net}.2 icmp type echo-request numgen random mod 100 < 50 drop"
        ));
        format!(
            "nftables numgen random mod 100 < 50 drop (tc netem: {})",
            text(&netem.stderr).trim()
        )
    };
    let jobs = ping_job(
        "random",
        &format!(
            "host = \"{net}.2\"\ncount = 40\ninterval = \"20ms\"\nwarn_loss = \"0%\"\nmax_loss = \"99%\""
        ),
    );
    let (code, out) = once(dir.path(), &jobs, "random");
    assert_eq!(code, Some(1), "{mechanism}: {out}");
    assert!(
        out.starts_with("random: warning: ") && out.contains("% loss (warn 0%): "),
        "{mechanism}: {out}"
    );
    let replies: u32 = out
        .split_once("(warn 0%): ")
        .and_then(|(_, rest)| rest.split_once(" of 40 replies from "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("{mechanism}: no reply count in {out}"));
    eprintln!("random loss on the link by {mechanism}: {replies} of 40 replies");
    assert!(
        (5..=35).contains(&replies),
        "{mechanism}: {replies} of 40 replies, far from half: {out}"
    );
    let loss = format!("\n  loss={}%", f64::from(40 - replies) * 2.5);
    assert!(out.contains(&loss), "{mechanism}: {loss:?} in {out}");
}
