//! Certificate expiry of TLS services through the binary: `klaxon once` on `tcp` jobs
//! against a real TLS server and real STARTTLS mail servers on loopback, with
//! certificates made here that expire soon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use klaxon_testkit::mail::{MailServer, Protocol};
use klaxon_testkit::{Request, Response, Server};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

mod common;
use common::text;

/// A self-signed certificate for `localhost` that expires `days` from now (and an hour),
/// its key, and its PEM (to trust it as `ca_file`).
fn certificate(days: i64) -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    use chrono::Datelike;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mail.klaxon.test");
    let at = |d: i64| {
        let t = chrono::Utc::now() + chrono::Duration::days(d);
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    params.not_before = at(-30);
    // The next midnight after `days` from now: `days` whole days are left.
    params.not_after = at(days + 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (
        cert.der().clone(),
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        cert.pem(),
    )
}

/// A plain TLS server (no protocol spoken) on loopback serving `cert`.
async fn tls_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
    let acceptor = klaxon_testkit::mail::acceptor(cert, key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(socket).await {
                    use tokio::io::AsyncReadExt;
                    let _ = tls.read(&mut [0; 64]).await;
                }
            });
        }
    });
    port
}

fn config(dir: &std::path::Path, slack: &str, ca: &str, jobs: &str) -> std::path::PathBuf {
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let text = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\n[defaults]\nnotify = [\"slack\"]\n\
         [notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{slack}\"\n{}",
        jobs.replace("CA_FILE", &format!("{:?}", ca_file.display().to_string()))
    );
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn slack_text(r: &Request) -> String {
    r.json()["text"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_judges_certificates_of_tls_and_starttls_services() {
    let slack = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();

    let (cert, key, pem) = certificate(5);
    let tls_port = tls_server(cert.clone(), key.clone_key()).await;
    let smtp = MailServer::start(Protocol::Smtp, Some((cert.clone(), key.clone_key()))).await;
    let imap = MailServer::start(Protocol::Imap, Some((cert.clone(), key.clone_key()))).await;
    let pop3 = MailServer::start(Protocol::Pop3, Some((cert, key))).await;
    let plain = MailServer::start(Protocol::Smtp, None).await;
    let job = |name: &str, port: u16, how: &str| {
        format!(
            "[jobs.{name}]\nevery = \"1h\"\n[jobs.{name}.check]\ntype = \"tcp\"\n\
             host = \"localhost\"\nport = {port}\n{how}\nca_file = CA_FILE\n\
             cert_warn = \"14d\"\ncert_crit = \"2d\"\n"
        )
    };
    let jobs = [
        job("https", tls_port, "tls = true"),
        job("smtp", smtp.port, "starttls = \"smtp\""),
        job("imap", imap.port, "starttls = \"imap\""),
        job("pop3", pop3.port, "starttls = \"pop3\""),
        job("plain", plain.port, "starttls = \"smtp\""),
    ]
    .concat();
    let path = config(dir.path(), &slack.url("/hook"), &pem, &jobs);

    for name in ["https", "smtp", "imap", "pop3"] {
        let mut cmd = common::klaxon();
        cmd.arg("--config")
            .arg(&path)
            .args(["once", name, "--no-retry"]);
        let out = common::output(cmd).await;
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.starts_with(&format!(
                "{name}: warning: certificate expires in 5 days (1 of 1 attempts"
            )),
            "{stdout}"
        );
        assert!(stdout.contains("\n  connect_ms="), "{stdout}");
    }
    // Each warning's message names the certificate: its subject and notAfter.
    let got = slack.wait_for(4, std::time::Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    for message in &got {
        let body = slack_text(message);
        assert!(body.contains("certificate expires in 5 days"), "{body}");
        assert!(body.contains("subject: CN=mail.klaxon.test"), "{body}");
        assert!(body.contains("notAfter: 20"), "{body}");
    }

    let mut cmd = common::klaxon();
    cmd.arg("--config")
        .arg(&path)
        .args(["once", "plain", "--no-retry"]);
    let out = common::output(cmd).await;
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("plain: critical: SMTP: the server does not offer STARTTLS"),
        "{stdout}"
    );
}
