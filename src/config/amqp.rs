//! `IDENTITY_AMQP_URL` and `IDENTITY_AMQP_EXCHANGE`: optional for the server,
//! required by the mailer; `IDENTITY_EVENTS_EXCHANGE` and
//! `IDENTITY_EVENTS_SOURCE` for the user events the server publishes.

use secrecy::SecretString;

use super::{ConfigError, Source, error};

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// May carry credentials, so it is a secret.
    pub url: SecretString,
    /// Where emails go, for the mailer.
    pub exchange: String,
    /// Where user events go, for other services (may be the same exchange:
    /// their routing keys never match the mailer's).
    pub events_exchange: String,
    /// The CloudEvents `source` of the user events (a URI reference).
    pub events_source: String,
}

/// `None` when `IDENTITY_AMQP_URL` is unset.
///
/// # Errors
/// A URL that is not amqp:// or amqps://.
pub fn amqp<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<Option<AmqpSettings>, ConfigError> {
    let Some(url) = env.get("IDENTITY_AMQP_URL") else {
        return Ok(None);
    };
    let url = url.trim().to_owned();
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        // The value may hold a password: do not echo it.
        return Err(error("IDENTITY_AMQP_URL", "must start with amqp:// or amqps://"));
    }
    Ok(Some(AmqpSettings {
        url: SecretString::from(url),
        exchange: env.string("IDENTITY_AMQP_EXCHANGE", "identity.events"),
        events_exchange: env.string("IDENTITY_EVENTS_EXCHANGE", "identity.events"),
        events_source: env.string("IDENTITY_EVENTS_SOURCE", "/identity"),
    }))
}
