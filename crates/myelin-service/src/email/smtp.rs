//! A small SMTP client (RFC 5321): one message per connection, plain, STARTTLS or TLS from the
//! start, AUTH PLAIN when a login is configured (only over TLS, unless the transport is `none`).

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use myelin_core::config::EmailConfig;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// The whole exchange must end within this.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest reply accepted from the server.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A message to send: plain text.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: Box<dyn Io>,
    buffer: Vec<u8>,
}

impl Conn {
    /// One reply (its last line's code and all its text).
    async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            let line = self.line().await?;
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad reply {line:?}"))?;
            text.push_str(line.get(4..).unwrap_or_default());
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
            if text.len() > MAX_REPLY_BYTES {
                return Err("reply too long".to_owned());
            }
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).take(end).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buffer.len() > MAX_REPLY_BYTES {
                return Err("reply line too long".to_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the SMTP server closed the connection".to_owned());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.io.write_all(line.as_bytes()).await.map_err(|e| e.to_string())?;
        self.io.write_all(b"\r\n").await.map_err(|e| e.to_string())?;
        self.io.flush().await.map_err(|e| e.to_string())
    }

    /// Sends a command; its reply must have one of the `expected` codes.
    async fn command(&mut self, line: &str, expected: &[u16]) -> Result<String, String> {
        self.send(line).await?;
        let (code, text) = self.reply().await?;
        if !expected.contains(&code) {
            let shown = line.split_whitespace().next().unwrap_or_default();
            return Err(format!("{shown}: {code} {}", text.trim()));
        }
        Ok(text)
    }
}

async fn tls(io: Box<dyn Io>, host: &str) -> Result<Box<dyn Io>, String> {
    use rustls_platform_verifier::ConfigVerifierExt;
    let config = rustls::ClientConfig::with_platform_verifier().map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let stream =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, io).await.map_err(|e| e.to_string())?;
    Ok(Box::new(stream))
}

/// The address inside `Name <address>` (or the whole text).
pub fn bare_address(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close => &mailbox[open + 1..close],
        _ => mailbox.trim(),
    }
}

/// The message as sent after `DATA`: headers, a blank line, the body with CRLF line ends and
/// leading dots doubled, and the final `.`.
pub fn message_data(from: &str, mail: &Mail, date: &str, message_id: &str) -> String {
    let mut out = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        mail.to,
        encode_header(&mail.subject),
    );
    for line in mail.body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push('.');
    out
}

/// A header value: as is if ASCII, else an RFC 2047 encoded word.
fn encode_header(value: &str) -> String {
    let clean: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if clean.is_ascii() {
        clean
    } else {
        format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(clean.as_bytes()))
    }
}

/// One message with what goes around it: the sender, the name this host gives in `EHLO`, the
/// `Date` and `Message-ID` headers.
pub struct Envelope<'a> {
    pub from: &'a str,
    pub mail: &'a Mail,
    pub hello: &'a str,
    pub date: &'a str,
    pub message_id: &'a str,
}

/// Sends one message through the configured server.
pub async fn send(config: &EmailConfig, envelope: &Envelope<'_>) -> Result<(), String> {
    if envelope.mail.to.contains(['\r', '\n', '<', '>']) || envelope.from.contains(['\r', '\n']) {
        return Err("an address with line breaks or brackets".to_owned());
    }
    tokio::time::timeout(SMTP_TIMEOUT, exchange(config, envelope))
        .await
        .map_err(|_| "the SMTP server did not answer in time".to_owned())?
}

async fn exchange(config: &EmailConfig, envelope: &Envelope<'_>) -> Result<(), String> {
    let Envelope { from, mail, hello, date, message_id } = *envelope;
    let tcp = TcpStream::connect((config.smtp_host.as_str(), config.smtp_port)).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn Io> = Box::new(tcp);
    let mut secure = false;
    if config.tls == "tls" {
        io = tls(io, &config.smtp_host).await?;
        secure = true;
    }
    let mut conn = Conn { io, buffer: Vec::new() };
    let (code, text) = conn.reply().await?;
    if code != 220 {
        return Err(format!("greeting: {code} {}", text.trim()));
    }
    let mut extensions = conn.command(&format!("EHLO {hello}"), &[250]).await?;
    if config.tls == "starttls" {
        if !extensions.lines().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
            return Err(
                "the SMTP server does not offer STARTTLS (set email.tls = \"none\" to send in clear)".to_owned()
            );
        }
        conn.command("STARTTLS", &[220]).await?;
        let io = std::mem::replace(&mut conn.io, Box::new(tokio::io::duplex(1).0));
        conn = Conn { io: tls(io, &config.smtp_host).await?, buffer: Vec::new() };
        secure = true;
        extensions = conn.command(&format!("EHLO {hello}"), &[250]).await?;
    }
    if !config.smtp_user.is_empty() {
        if !secure && config.tls != "none" {
            return Err("no login over a connection in clear".to_owned());
        }
        let credentials = format!("\0{}\0{}", config.smtp_user, config.smtp_pass);
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes());
        conn.command(&format!("AUTH PLAIN {encoded}"), &[235]).await?;
    }
    let eight_bit = extensions.lines().any(|l| l.eq_ignore_ascii_case("8BITMIME"));
    let body = if eight_bit { " BODY=8BITMIME" } else { "" };
    conn.command(&format!("MAIL FROM:<{}>{body}", bare_address(from)), &[250]).await?;
    conn.command(&format!("RCPT TO:<{}>", bare_address(&mail.to)), &[250, 251]).await?;
    conn.command("DATA", &[354]).await?;
    conn.command(&message_data(from, mail, date, message_id), &[250]).await?;
    let _ = conn.command("QUIT", &[221]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Mail, bare_address, message_data};

    #[test]
    fn messages_are_framed_and_dot_stuffed() {
        let mail = Mail {
            to: "alice@example.org".into(),
            subject: "Validate your address: ünïcode".into(),
            body: "Hello\n.hidden line\nbye".into(),
        };
        let data = message_data("Myelin <noreply@example.org>", &mail, "Thu, 03 Dec 2026 05:00:00 +0000", "x@y");
        assert!(data.starts_with("From: Myelin <noreply@example.org>\r\nTo: alice@example.org\r\n"), "{data}");
        assert!(data.contains("Subject: =?utf-8?b?"), "{data}");
        assert!(data.ends_with("\r\n\r\nHello\r\n..hidden line\r\nbye\r\n."), "{data}");
        assert_eq!(bare_address("Myelin <noreply@example.org>"), "noreply@example.org");
        assert_eq!(bare_address("noreply@example.org"), "noreply@example.org");
    }
}
