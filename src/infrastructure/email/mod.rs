//! Email providers behind the `EmailSender` port. Adding a provider means adding
//! one type that implements the trait, and one arm in [`build_sender`].

mod console;
mod sendgrid;
mod settings;
mod smtp;

use std::sync::Arc;

pub use console::ConsoleEmailSender;
pub use sendgrid::SendGridEmailSender;
pub use settings::{EmailProvider, EmailSettings};
pub use smtp::SmtpEmailSender;

use crate::{domain::ports::EmailSender, observability::Metrics};

/// The provider the settings name.
///
/// # Errors
/// The provider's client cannot be built (a malformed SMTP URL, say).
pub fn build_sender(settings: &EmailSettings, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<dyn EmailSender>> {
    Ok(match settings.provider {
        EmailProvider::Console => Arc::new(ConsoleEmailSender),
        EmailProvider::SendGrid => Arc::new(SendGridEmailSender::new(settings, Arc::clone(metrics))?),
        EmailProvider::Smtp => Arc::new(SmtpEmailSender::new(settings)?),
    })
}

/// rustls needs one process-wide crypto provider; ring is ours everywhere
/// (database, broker, HTTP, SMTP). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
