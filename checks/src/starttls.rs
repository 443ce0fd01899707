//! The plain-text dialogue before a TLS handshake on a mail port (`starttls` of the `tcp`
//! check): SMTP's `EHLO` and `STARTTLS`, IMAP's `STARTTLS`, POP3's `STLS`. Lines are
//! read with a bound on their length and number, and anything the server sends after
//! agreeing to the upgrade is refused rather than carried into the TLS session.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest line read (RFC 5321 allows 512 bytes for a reply line).
const MAX_LINE: usize = 1024;
/// The most lines of one reply (an `EHLO` answer, IMAP's untagged lines).
const MAX_LINES: usize = 64;

/// A mail protocol whose plain-text connection is upgraded to TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Starttls {
    Smtp,
    Imap,
    Pop3,
}

impl Starttls {
    /// The names `starttls` takes.
    pub const NAMES: &'static str = "`smtp`, `imap` or `pop3`";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "smtp" => Some(Self::Smtp),
            "imap" => Some(Self::Imap),
            "pop3" => Some(Self::Pop3),
            _ => None,
        }
    }

    /// `SMTP`, `IMAP`, `POP3`: how summaries name the protocol.
    pub fn label(self) -> &'static str {
        match self {
            Self::Smtp => "SMTP",
            Self::Imap => "IMAP",
            Self::Pop3 => "POP3",
        }
    }

    /// What to send after the handshake to leave politely.
    pub(crate) fn goodbye(self) -> &'static [u8] {
        match self {
            Self::Smtp | Self::Pop3 => b"QUIT\r\n",
            Self::Imap => b"a2 LOGOUT\r\n",
        }
    }

    /// Reads the greeting and asks for the upgrade; returns the connection once the
    /// server agreed, ready for the TLS handshake. Failures start with the protocol's
    /// label: `SMTP: the server does not offer STARTTLS`.
    pub(crate) async fn negotiate(self, stream: TcpStream) -> Result<TcpStream, String> {
        let mut reader = BufReader::new(stream);
        self.dialogue(&mut reader)
            .await
            .map_err(|e| format!("{}: {e}", self.label()))?;
        if !reader.buffer().is_empty() {
            return Err(format!(
                "{}: the server sent more after agreeing to STARTTLS",
                self.label()
            ));
        }
        Ok(reader.into_inner())
    }

    async fn dialogue(self, reader: &mut BufReader<TcpStream>) -> Result<(), String> {
        match self {
            Self::Smtp => {
                let greeting = smtp_reply(reader).await?;
                expect_code(&greeting, "220", "the greeting")?;
                send(reader, b"EHLO klaxon\r\n").await?;
                let ehlo = smtp_reply(reader).await?;
                expect_code(&ehlo, "250", "the answer to EHLO")?;
                let offered = ehlo.iter().any(|l| {
                    l.get(4..)
                        .and_then(|rest| rest.split_whitespace().next())
                        .is_some_and(|w| w.eq_ignore_ascii_case("STARTTLS"))
                });
                if !offered {
                    return Err("the server does not offer STARTTLS".into());
                }
                send(reader, b"STARTTLS\r\n").await?;
                let answer = smtp_reply(reader).await?;
                expect_code(&answer, "220", "the answer to STARTTLS")
            }
            Self::Imap => {
                let greeting = line(reader).await?;
                if !greeting.starts_with("* OK") {
                    return Err(format!("the greeting was `{}`", shown(&greeting)));
                }
                send(reader, b"a1 STARTTLS\r\n").await?;
                for _ in 0..MAX_LINES {
                    let answer = line(reader).await?;
                    if answer.starts_with("* ") {
                        continue;
                    }
                    if answer.starts_with("a1 OK") {
                        return Ok(());
                    }
                    return Err(format!("STARTTLS refused: `{}`", shown(&answer)));
                }
                Err(format!("no answer to STARTTLS in {MAX_LINES} lines"))
            }
            Self::Pop3 => {
                let greeting = line(reader).await?;
                if !greeting.starts_with("+OK") {
                    return Err(format!("the greeting was `{}`", shown(&greeting)));
                }
                send(reader, b"STLS\r\n").await?;
                let answer = line(reader).await?;
                if answer.starts_with("+OK") {
                    Ok(())
                } else {
                    Err(format!("STLS refused: `{}`", shown(&answer)))
                }
            }
        }
    }
}

async fn send(reader: &mut BufReader<TcpStream>, command: &[u8]) -> Result<(), String> {
    let stream = reader.get_mut();
    stream.write_all(command).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// One line without its line end, at most [`MAX_LINE`] bytes.
async fn line(reader: &mut (impl AsyncBufRead + Unpin)) -> Result<String, String> {
    let mut bytes = Vec::new();
    let mut limited = reader.take(MAX_LINE as u64);
    let n = limited
        .read_until(b'\n', &mut bytes)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    if bytes.last() != Some(&b'\n') {
        return Err(if n >= MAX_LINE {
            format!("a line longer than {MAX_LINE} bytes")
        } else {
            "the server closed the connection".into()
        });
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// An SMTP reply: its lines, each but the last a code followed by `-`. A line without a
/// code ends it (and fails the caller's check of the code).
async fn smtp_reply(reader: &mut (impl AsyncBufRead + Unpin)) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for _ in 0..MAX_LINES {
        let l = line(reader).await?;
        let coded = l.len() >= 4 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit);
        let last = !coded || l.as_bytes()[3] != b'-';
        lines.push(l);
        if last {
            return Ok(lines);
        }
    }
    Err(format!("a reply longer than {MAX_LINES} lines"))
}

fn expect_code(reply: &[String], code: &str, what: &str) -> Result<(), String> {
    let last = reply.last().map(String::as_str).unwrap_or_default();
    if last.starts_with(code) {
        Ok(())
    } else {
        Err(format!("{what} was `{}`", shown(last)))
    }
}

/// A server's line as messages quote it: printable, at most 120 characters.
fn shown(line: &str) -> String {
    let clean: String = line
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(120)
        .collect();
    clean
}
