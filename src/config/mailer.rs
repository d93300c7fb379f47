//! The mailer's settings: its own `IDENTITY_MAILER_*` section, and the
//! sections it shares with the server, parsed by the same functions.

use std::{net::SocketAddr, time::Duration};

use super::{
    AmqpSettings, ConfigError, Source, TelemetryDefaults, TelemetrySettings, amqp, database, email, error,
    expected_emails, telemetry,
};
use crate::{
    application::{ExpectedEmails, RetryPolicy},
    infrastructure::{email::EmailSettings, sea_orm::DatabaseSettings},
};

#[derive(Debug, Clone)]
pub struct MailerSettings {
    pub amqp: AmqpSettings,
    pub consumer: ConsumerSettings,
    pub database: DatabaseSettings,
    pub email: EmailSettings,
    /// The only links the mailer sends: those the server makes.
    pub expected: ExpectedEmails,
    pub telemetry: TelemetrySettings,
}

/// How the mailer consumes, retries, and reports its health.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub queue: String,
    pub prefetch: u16,
    pub retry: RetryPolicy,
    pub health_addr: SocketAddr,
}

impl MailerSettings {
    /// # Errors
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// # Errors
    /// The first invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Source(lookup);
        Ok(Self {
            amqp: amqp(&env)?.ok_or_else(|| {
                error("IDENTITY_AMQP_URL", "is required by the mailer (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)")
            })?,
            consumer: consumer(&env)?,
            database: database(&env)?,
            email: email(&env)?,
            expected: expected_emails(&env)?,
            telemetry: telemetry(&env, TelemetryDefaults::MAILER)?,
        })
    }
}

fn consumer<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<ConsumerSettings, ConfigError> {
    let max_attempts: u32 = env.parsed("IDENTITY_MAILER_MAX_ATTEMPTS", 8)?;
    if max_attempts == 0 {
        return Err(error("IDENTITY_MAILER_MAX_ATTEMPTS", "must be at least 1"));
    }
    let prefetch: u16 = env.parsed("IDENTITY_MAILER_PREFETCH", 16)?;
    if prefetch == 0 {
        return Err(error("IDENTITY_MAILER_PREFETCH", "must be at least 1"));
    }
    Ok(ConsumerSettings {
        queue: env.string("IDENTITY_MAILER_QUEUE", "identity.mailer"),
        prefetch,
        retry: RetryPolicy {
            max_attempts,
            base_delay: env.positive_duration("IDENTITY_MAILER_RETRY_DELAY", Duration::from_secs(1))?,
            max_delay: env.positive_duration("IDENTITY_MAILER_MAX_RETRY_DELAY", Duration::from_secs(300))?,
        },
        health_addr: env.parsed("IDENTITY_MAILER_HEALTH_ADDR", SocketAddr::from(([127, 0, 0, 1], 50052)))?,
    })
}
