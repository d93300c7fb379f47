//! SMTP through lettre (`smtp://`, `smtps://` or `smtp://...?tls=required` URLs).

use anyhow::Context;
use async_trait::async_trait;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use secrecy::ExposeSecret;

use super::EmailSettings;
use crate::domain::ports::{EmailSender, OutgoingEmail, SendEmailError};

pub struct SmtpEmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpEmailSender {
    /// # Errors
    /// A malformed `IDENTITY_SMTP_URL` or sender address.
    pub fn new(settings: &EmailSettings) -> anyhow::Result<Self> {
        super::install_crypto_provider();
        let url = settings.smtp_url.as_ref().context("IDENTITY_SMTP_URL is required for SMTP")?;
        // The URL may hold credentials: the error must not repeat it.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|_| anyhow::anyhow!("IDENTITY_SMTP_URL is not a valid smtp:// or smtps:// URL"))?
            .timeout(Some(settings.timeout))
            .build();
        let from = settings.from.as_str().parse().context("IDENTITY_EMAIL_FROM is not a valid mailbox")?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl EmailSender for SmtpEmailSender {
    fn provider(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendEmailError> {
        let permanent = |reason: String| SendEmailError::Permanent { reason };
        let to: Mailbox = email.to.as_str().parse().map_err(|e| permanent(format!("invalid recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            .multipart(MultiPart::alternative_plain_html(email.text_body.clone(), email.html_body.clone()))
            .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // 5xx replies: the server refused this message for good.
            Err(error) if error.is_permanent() => Err(permanent(format!("SMTP refused the message: {error}"))),
            Err(error) => Err(SendEmailError::Transient { reason: format!("SMTP failed: {error}"), retry_after: None }),
        }
    }
}
