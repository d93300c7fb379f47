//! `IDENTITY_AMQP_URL` and `IDENTITY_AMQP_EXCHANGE`: optional for the server,
//! required by the mailer.

use secrecy::SecretString;

use super::{ConfigError, Source, error};

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// May carry credentials, so it is a secret.
    pub url: SecretString,
    pub exchange: String,
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
    }))
}
