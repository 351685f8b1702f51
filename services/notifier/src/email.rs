//! E-mail through lettre's SMTP transport: STARTTLS, implicit TLS or plain, with optional
//! authentication; multipart/alternative (text and HTML). The password never leaves: errors
//! are scrubbed of it, and the transport is never printed.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use steward_config::{EmailConfig, SmtpSecurity};

use crate::outbox::Message;
use crate::telegram::SendError;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    password: Option<String>,
    timeout: std::time::Duration,
    /// `host:port (security)`, for logs.
    pub endpoint: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Parses a mailbox (`a@b` or `Name <a@b>`).
pub fn mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>().map_err(|e| {
        format!("not an e-mail address ({e}); write `ops@example.org` or `Ops <ops@example.org>`")
    })
}

/// The certificates of `notify.email.ca_file` (relative to `base_dir`), to trust besides the
/// system's; `None` when not set. The error names the file and what is wrong with it.
pub fn ca_certificates(
    cfg: &EmailConfig,
    base_dir: &std::path::Path,
) -> Result<Option<Certificate>, String> {
    let Some(file) = &cfg.ca_file else {
        return Ok(None);
    };
    let path = base_dir.join(file);
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let count = pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .filter(|w| *w == b"-----BEGIN CERTIFICATE-----")
        .count();
    if count == 0 {
        return Err(format!(
            "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Certificate::from_pem(&pem)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Mailer {
    /// The transport of `cfg`; `base_dir` resolves a relative `ca_file`.
    pub fn new(cfg: &EmailConfig, base_dir: &std::path::Path) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let port = cfg.port();
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut params = TlsParameters::builder(cfg.host.clone());
            if let Some(ca) = ca_certificates(cfg, base_dir).map_err(anyhow::Error::msg)? {
                params = params.add_root_certificate(ca);
            }
            Ok(params.build()?)
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host);
        let builder = match cfg.security {
            // STARTTLS is required: a server that does not offer it is refused.
            SmtpSecurity::Starttls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::Plain => builder,
        };
        let mut builder = builder.port(port).timeout(Some(cfg.timeout));
        let password = cfg
            .password
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| p.expose().to_owned());
        if let Some(user) = &cfg.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.clone().unwrap_or_default(),
            ));
        }
        let from = mailbox(&cfg.from).map_err(|e| anyhow::anyhow!("notify.email.from: {e}"))?;
        Ok(Self {
            transport: builder.build(),
            from,
            password,
            timeout: cfg.timeout,
            endpoint: format!("{}:{port} ({})", cfg.host, cfg.security.as_str()),
        })
    }

    fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), steward_config::REDACTED),
            _ => text.to_owned(),
        }
    }

    /// The message as it goes on the wire (for tests and the benchmark).
    pub fn build(&self, m: &Message) -> Result<lettre::Message, SendError> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            // A stable Message-ID: the same message sent again is recognisably the same.
            .message_id(Some(format!("<{}@steward.notifier>", m.id)))
            .subject(m.summary.clone());
        for r in &m.recipients {
            b = b.to(mailbox(r).map_err(SendError::Permanent)?);
        }
        b.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(m.body.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(m.body_html.clone()),
                ),
        )
        .map_err(|e| SendError::Permanent(format!("cannot build the e-mail: {e}")))
    }

    /// Sends one message; returns the server's answer (its queue id, usually).
    pub async fn send(&self, m: &Message) -> Result<String, SendError> {
        let email = self.build(m)?;
        // lettre's own timeout covers each read and write; a server that answers slowly line
        // by line, or stalls mid-conversation, is cut off here.
        let sent = tokio::time::timeout(self.timeout * 2, self.transport.send(email)).await;
        let Ok(sent) = sent else {
            return Err(SendError::Transient(format!(
                "SMTP {}: no complete answer within {:?}",
                self.endpoint,
                self.timeout * 2
            )));
        };
        match sent {
            Ok(resp) => Ok(resp.message().collect::<Vec<_>>().join(" ")),
            Err(e) => {
                let text = self.scrub(&format!("SMTP {}: {e}", self.endpoint));
                if e.is_permanent() {
                    Err(SendError::Permanent(text))
                } else {
                    Err(SendError::Transient(text))
                }
            }
        }
    }
}
