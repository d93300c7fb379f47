//! `IDENTITY_DATABASE_*` and `IDENTITY_AUTO_MIGRATE`, read alike by both binaries.

use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Source};
use crate::infrastructure::sea_orm::DatabaseSettings;

/// # Errors
/// The first invalid variable.
pub fn database<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<DatabaseSettings, ConfigError> {
    Ok(DatabaseSettings {
        url: SecretString::from(env.string("IDENTITY_DATABASE_URL", "sqlite://identity.db?mode=rwc")),
        max_connections: env.parsed("IDENTITY_DATABASE_MAX_CONNECTIONS", 10)?,
        acquire_timeout: env.positive_duration("IDENTITY_DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(5))?,
        auto_migrate: env.boolean("IDENTITY_AUTO_MIGRATE", true)?,
    })
}
