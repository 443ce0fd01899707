//! A real mail server's front door on an ephemeral loopback port: it speaks just enough
//! SMTP, IMAP or POP3 to greet, list its capabilities, upgrade the connection with
//! STARTTLS (`STLS` for POP3) through rustls, and say goodbye; with no certificate it
//! does not offer the upgrade and refuses it as a real server would.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The protocol a [`MailServer`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
}

/// A mail server on `127.0.0.1:port`. Stops when dropped.
pub struct MailServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl MailServer {
    /// Serves `protocol`, upgrading to TLS with `cert` and `key` on STARTTLS; `None`:
    /// STARTTLS is neither offered nor accepted.
    pub async fn start(
        protocol: Protocol,
        tls: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Self {
        let acceptor = tls.map(|(cert, key)| acceptor(cert, key));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that hangs up or rejects the certificate: fine.
                    let _ = serve(protocol, socket, acceptor).await;
                });
            }
        });
        Self { port, task }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server's side of the handshake, serving `cert` (rustls with aws-lc-rs).
pub fn acceptor(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

type Io = std::io::Result<()>;

async fn serve(
    protocol: Protocol,
    socket: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> Io {
    let mut plain = BufReader::new(socket);
    let greeting = match protocol {
        Protocol::Smtp => "220 localhost ESMTP klaxon-test\r\n",
        Protocol::Imap => "* OK klaxon-test IMAP4rev1 ready\r\n",
        Protocol::Pop3 => "+OK klaxon-test POP3 ready\r\n",
    };
    plain.get_mut().write_all(greeting.as_bytes()).await?;
    let offered = acceptor.is_some();
    if !dialogue(protocol, &mut plain, offered, false).await? {
        return Ok(());
    }
    let Some(acceptor) = acceptor else {
        return Ok(());
    };
    let tls = acceptor.accept(plain.into_inner()).await?;
    let mut tls = BufReader::new(tls);
    dialogue(protocol, &mut tls, false, true).await?;
    Ok(())
}

/// Answers commands until the client quits (false) or, when `offer`, STARTTLS is agreed
/// (true).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    protocol: Protocol,
    stream: &mut BufReader<S>,
    offer: bool,
    secure: bool,
) -> std::io::Result<bool> {
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let command = line.trim_end().to_owned();
        let (tag, verb) = match protocol {
            Protocol::Imap => command.split_once(' ').unwrap_or(("*", &command)),
            _ => ("", command.as_str()),
        };
        let verb = verb.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let (answer, upgrade, quit) = match (protocol, verb.as_str()) {
            (Protocol::Smtp, "EHLO") => {
                let starttls = if offer { "250-STARTTLS\r\n" } else { "" };
                let auth = if secure { "250-AUTH PLAIN\r\n" } else { "" };
                (
                    format!("250-localhost\r\n250-PIPELINING\r\n{starttls}{auth}250 8BITMIME\r\n"),
                    false,
                    false,
                )
            }
            (Protocol::Smtp, "STARTTLS") if offer => {
                ("220 2.0.0 Ready to start TLS\r\n".to_owned(), true, false)
            }
            (Protocol::Smtp, "STARTTLS") => (
                "502 5.5.1 STARTTLS not available\r\n".to_owned(),
                false,
                false,
            ),
            (Protocol::Smtp, "QUIT") => ("221 2.0.0 Bye\r\n".to_owned(), false, true),
            (Protocol::Smtp, _) => (
                "502 5.5.2 Command not recognized\r\n".to_owned(),
                false,
                false,
            ),
            (Protocol::Imap, "CAPABILITY") => {
                let starttls = if offer { " STARTTLS" } else { "" };
                (
                    format!("* CAPABILITY IMAP4rev1{starttls}\r\n{tag} OK CAPABILITY done\r\n"),
                    false,
                    false,
                )
            }
            (Protocol::Imap, "STARTTLS") if offer => (
                format!("{tag} OK Begin TLS negotiation now\r\n"),
                true,
                false,
            ),
            (Protocol::Imap, "LOGOUT") => (
                format!("* BYE logging out\r\n{tag} OK LOGOUT done\r\n"),
                false,
                true,
            ),
            (Protocol::Imap, _) => (format!("{tag} BAD unknown command\r\n"), false, false),
            (Protocol::Pop3, "CAPA") => {
                let stls = if offer { "STLS\r\n" } else { "" };
                (format!("+OK\r\nUSER\r\n{stls}.\r\n"), false, false)
            }
            (Protocol::Pop3, "STLS") if offer => ("+OK Begin TLS\r\n".to_owned(), true, false),
            (Protocol::Pop3, "QUIT") => ("+OK bye\r\n".to_owned(), false, true),
            (Protocol::Pop3, _) => ("-ERR unknown command\r\n".to_owned(), false, false),
        };
        stream.get_mut().write_all(answer.as_bytes()).await?;
        stream.get_mut().flush().await?;
        if upgrade {
            return Ok(true);
        }
        if quit {
            return Ok(false);
        }
    }
}
