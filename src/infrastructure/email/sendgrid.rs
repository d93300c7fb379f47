//! SendGrid's v3 Mail Send API over reqwest.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use reqwest::{StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tracing::Instrument;

use super::EmailSettings;
use crate::{
    domain::{
        Email,
        ports::{EmailSender, OutgoingEmail, SendEmailError},
    },
    observability::Metrics,
};

pub struct SendGridEmailSender {
    client: reqwest::Client,
    endpoint: String,
    /// `server.address` for the client span.
    host: String,
    api_key: SecretString,
    from: Email,
    metrics: Arc<Metrics>,
}

impl SendGridEmailSender {
    /// # Errors
    /// No API key, or the HTTP client cannot be built.
    pub fn new(settings: &EmailSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        super::install_crypto_provider();
        let api_key = settings.sendgrid_api_key.clone().context("SENDGRID_API_KEY is required for SendGrid")?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("identity-mailer/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the SendGrid HTTP client")?;
        let endpoint = format!("{}/v3/mail/send", settings.sendgrid_base_url);
        let host =
            reqwest::Url::parse(&endpoint).ok().and_then(|u| u.host_str().map(ToOwned::to_owned)).unwrap_or_default();
        Ok(Self { client, endpoint, host, api_key, from: settings.from.clone(), metrics })
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
        // Semantic conventions for HTTP clients: span "POST", kind client.
        let span = tracing::info_span!(
            "sendgrid.send",
            otel.name = "POST",
            otel.kind = "client",
            http.request.method = "POST",
            server.address = self.host.as_str(),
            url.full = self.endpoint.as_str(),
            http.response.status_code = tracing::field::Empty,
            email.provider = "sendgrid",
        );
        let result = self.post(email).instrument(span).await;
        let status = match &result {
            Ok(status) => status.as_u16().to_string(),
            Err((status, _)) => status.map_or_else(|| "error".to_owned(), |s| s.as_u16().to_string()),
        };
        self.metrics.record_provider_response("sendgrid", &status);
        result.map(|_| ()).map_err(|(_, error)| error)
    }
}

impl SendGridEmailSender {
    async fn post(&self, email: &OutgoingEmail) -> Result<StatusCode, (Option<StatusCode>, SendEmailError)> {
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(self.api_key.expose_secret())
            .json(&self.body(email))
            .send()
            .await
            // Timeouts and connection errors: the request may not have arrived.
            .map_err(|e| {
                (None, SendEmailError::Transient { reason: format!("SendGrid unreachable: {e}"), retry_after: None })
            })?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        tracing::info!(http.response.status_code = status.as_u16(), provider = "sendgrid", "provider answered");
        if status.is_success() {
            return Ok(status);
        }
        let wait = retry_after(response.headers());
        // SendGrid explains refusals in a small JSON body; it holds no secret.
        let detail: String = response.text().await.unwrap_or_default().chars().take(500).collect();
        let reason = format!("SendGrid answered {status}: {detail}");
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err((Some(status), SendEmailError::Transient { reason, retry_after: wait }))
        } else {
            Err((Some(status), SendEmailError::Permanent { reason }))
        }
    }
}
