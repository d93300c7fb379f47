use std::time::Duration;

use secrecy::SecretString;

use crate::domain::Email;

/// Which provider sends emails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProvider {
    Console,
    SendGrid,
    Smtp,
}

/// Which provider sends emails, and how to reach it.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub provider: EmailProvider,
    pub from: Email,
    pub sendgrid_api_key: Option<SecretString>,
    pub sendgrid_base_url: String,
    /// May carry credentials, so it is a secret.
    pub smtp_url: Option<SecretString>,
    /// Longest wait for the provider's answer before the attempt counts as failed.
    pub timeout: Duration,
}
