//! The single-use links in emails: `IDENTITY_VERIFICATION_URL`,
//! `IDENTITY_PASSWORD_RESET_URL`, `IDENTITY_EMAIL_CHANGE_URL` and how long
//! their tokens live.

use std::time::Duration;

use super::{ConfigError, Source, error};
use crate::application::{ExpectedEmails, LinkTemplate};

#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub verification_url: LinkTemplate,
    pub verification_token_ttl: Duration,
    pub password_reset_url: LinkTemplate,
    pub password_reset_token_ttl: Duration,
    pub email_change_url: LinkTemplate,
    pub email_change_token_ttl: Duration,
}

/// # Errors
/// The first invalid variable.
pub fn links<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<LinkSettings, ConfigError> {
    let ExpectedEmails { verification_links, reset_links, email_change_links } = expected_emails(env)?;
    Ok(LinkSettings {
        verification_url: verification_links,
        verification_token_ttl: env
            .positive_duration("IDENTITY_VERIFICATION_TOKEN_TTL", Duration::from_secs(86_400))?,
        password_reset_url: reset_links,
        password_reset_token_ttl: env
            .positive_duration("IDENTITY_PASSWORD_RESET_TOKEN_TTL", Duration::from_secs(3600))?,
        email_change_url: email_change_links,
        email_change_token_ttl: env.positive_duration("IDENTITY_EMAIL_CHANGE_TOKEN_TTL", Duration::from_secs(3600))?,
    })
}

/// `IDENTITY_VERIFICATION_URL`, `IDENTITY_PASSWORD_RESET_URL` and
/// `IDENTITY_EMAIL_CHANGE_URL`. The server
/// makes its links from them; the mailer reads the same variables here and sends
/// no other links.
///
/// # Errors
/// A template without the `{token}` placeholder.
pub fn expected_emails<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<ExpectedEmails, ConfigError> {
    Ok(ExpectedEmails {
        verification_links: LinkTemplate::parse(
            &env.string("IDENTITY_VERIFICATION_URL", "http://localhost:3000/verify-email?token={token}"),
        )
        .map_err(|e| error("IDENTITY_VERIFICATION_URL", e))?,
        reset_links: LinkTemplate::parse(
            &env.string("IDENTITY_PASSWORD_RESET_URL", "http://localhost:3000/reset-password?token={token}"),
        )
        .map_err(|e| error("IDENTITY_PASSWORD_RESET_URL", e))?,
        email_change_links: LinkTemplate::parse(
            &env.string("IDENTITY_EMAIL_CHANGE_URL", "http://localhost:3000/confirm-email-change?token={token}"),
        )
        .map_err(|e| error("IDENTITY_EMAIL_CHANGE_URL", e))?,
    })
}
