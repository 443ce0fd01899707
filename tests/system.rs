//! Real monitoring plugins (Debian's `monitoring-plugins-basic`) run as `script` checks
//! through the built binary: their exit codes become severities and their first line the
//! summary. `.ci/run` installs the package and runs this suite with
//! `cargo test -p klaxon --features system-tests --test system`; without the package the
//! suite fails and says how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn plugin(name: &str) -> String {
    let path = Path::new(PLUGINS).join(name);
    assert!(
        path.exists(),
        "`{}` is missing: install Debian's monitoring-plugins-basic \
         (`apt-get install monitoring-plugins-basic`; .ci/run does this)",
        path.display()
    );
    path.display().to_string()
}

struct Case {
    job: &'static str,
    command: Vec<String>,
    exit: i32,
    severity: &'static str,
    summary_starts: &'static str,
    /// Perfdata labels the run must report, printed by `once` as `  label=value…`.
    perfdata: &'static [&'static str],
}

#[test]
fn monitoring_plugins_run_as_script_checks() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let args = |name: &str, rest: &[&str]| {
        let mut v = vec![plugin(name)];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let cases = vec![
        Case {
            job: "disk-ok",
            command: args("check_disk", &["-w", "1%", "-c", "1%", "-p", "/"]),
            exit: 0,
            severity: "ok",
            summary_starts: "DISK OK - free space: /",
            perfdata: &["/"],
        },
        Case {
            job: "disk-critical",
            command: args("check_disk", &["-w", "100%", "-c", "100%", "-p", "/"]),
            exit: 1,
            severity: "critical",
            summary_starts: "DISK CRITICAL - free space: /",
            perfdata: &["/"],
        },
        Case {
            job: "load",
            command: args(
                "check_load",
                &["-w", "1000,1000,1000", "-c", "2000,2000,2000"],
            ),
            exit: 0,
            severity: "ok",
            summary_starts: "LOAD OK - total load average:",
            perfdata: &["load1", "load5", "load15"],
        },
        Case {
            job: "procs",
            command: args("check_procs", &["-w", "1", "-c", "1"]),
            exit: 1,
            severity: "critical",
            summary_starts: "PROCS CRITICAL:",
            perfdata: &["procs"],
        },
        Case {
            job: "tcp-open",
            command: args("check_tcp", &["-H", "127.0.0.1", "-p", &port]),
            exit: 0,
            severity: "ok",
            summary_starts: "TCP OK - ",
            perfdata: &["time"],
        },
        Case {
            job: "tcp-refused",
            command: args("check_tcp", &["-H", "127.0.0.1", "-p", "9"]),
            exit: 1,
            severity: "critical",
            summary_starts: "connect to address 127.0.0.1 and port 9: Connection refused",
            perfdata: &[],
        },
        Case {
            job: "warning",
            command: args("check_dummy", &["1", "disk nearly full"]),
            exit: 1,
            severity: "warning",
            summary_starts: "WARNING: disk nearly full",
            perfdata: &[],
        },
        Case {
            job: "unknown",
            command: args("check_dummy", &["3", "cannot tell"]),
            exit: 1,
            severity: "unknown",
            summary_starts: "UNKNOWN: cannot tell",
            perfdata: &[],
        },
    ];

    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("[agent]\nstate_dir = \"state\"\n");
    for case in &cases {
        let argv: Vec<String> = case.command.iter().map(|a| format!("{a:?}")).collect();
        config.push_str(&format!(
            "[jobs.{}]\nevery = \"1h\"\n[jobs.{}.check]\ntype = \"script\"\ncommand = [{}]\n",
            case.job,
            case.job,
            argv.join(", ")
        ));
    }
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();

    for case in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_klaxon"))
            .arg("--config")
            .arg(&path)
            .args(["once", case.job, "--no-retry"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("{}: {}: {}", case.job, case.severity, case.summary_starts);
        assert!(
            stdout.starts_with(&prefix),
            "{}: expected `{prefix}…`, got:\n{stdout}{}",
            case.job,
            String::from_utf8_lossy(&out.stderr)
        );
        // Performance data is not part of the summary; it comes through as metrics.
        assert!(!stdout.lines().next().unwrap().contains('|'), "{stdout}");
        for label in case.perfdata {
            let line = format!("  {label}=");
            assert!(
                stdout.lines().any(|l| l.starts_with(&line)),
                "{}: no `{label}` metric in:\n{stdout}",
                case.job
            );
        }
        assert_eq!(out.status.code(), Some(case.exit), "{}: {stdout}", case.job);
    }
}
