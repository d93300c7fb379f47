//! SendGrid's v3 Mail Send API over reqwest.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::{StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{
    config::EmailSettings,
    domain::{
        Email,
        ports::{EmailSender, OutgoingEmail, SendEmailError},
    },
};

pub struct SendGridEmailSender {
    client: reqwest::Client,
    endpoint: String,
    api_key: SecretString,
    from: Email,
}

impl SendGridEmailSender {
    /// # Errors
    /// No API key, or the HTTP client cannot be built.
    pub fn new(settings: &EmailSettings) -> anyhow::Result<Self> {
        super::install_crypto_provider();
        let api_key = settings.sendgrid_api_key.clone().context("SENDGRID_API_KEY is required for SendGrid")?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("identity-mailer/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the SendGrid HTTP client")?;
        Ok(Self {
            client,
            endpoint: format!("{}/v3/mail/send", settings.sendgrid_base_url),
            api_key,
            from: settings.from.clone(),
        })
    }

    fn body(&self, email: &OutgoingEmail) -> serde_json::Value {
        json!({
            "personalizations": [{ "to": [{ "email": email.to.as_str() }] }],
            "from": { "email": self.from.as_str() },
            "subject": email.subject,
            "content": [
                { "type": "text/plain", "value": email.text_body },
                { "type": "text/html", "value": email.html_body },
            ],
            // Lets SendGrid's event webhook be joined back to our event.
            "custom_args": { "event_id": email.event_id.to_string() },
        })
    }
}

/// `Retry-After` in seconds (SendGrid's form); HTTP dates are not used by it.
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[async_trait]
impl EmailSender for SendGridEmailSender {
    fn provider(&self) -> &'static str {
        "sendgrid"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendEmailError> {
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(self.api_key.expose_secret())
            .json(&self.body(email))
            .send()
            .await
            // Timeouts and connection errors: the request may not have arrived.
            .map_err(|e| SendEmailError::Transient {
                reason: format!("SendGrid unreachable: {e}"),
                retry_after: None,
            })?;
        let status = response.status();
        tracing::info!(http.response.status_code = status.as_u16(), provider = "sendgrid", "provider answered");
        if status.is_success() {
            return Ok(());
        }
        let wait = retry_after(response.headers());
        // SendGrid explains refusals in a small JSON body; it holds no secret.
        let detail: String = response.text().await.unwrap_or_default().chars().take(500).collect();
        let reason = format!("SendGrid answered {status}: {detail}");
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(SendEmailError::Transient { reason, retry_after: wait })
        } else {
            Err(SendEmailError::Permanent { reason })
        }
    }
}
