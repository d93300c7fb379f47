//! Abuse limits: call rates, login throttling, resend cooldown, message size.

use std::time::Duration;

use super::{ConfigError, Source, error};

#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Calls per minute per client address (0: unlimited).
    pub per_address: u32,
    pub per_email: u32,
    /// RefreshSession and Logout, per address: backends refresh for many users.
    pub refresh_per_address: u32,
    /// On PostgreSQL, whether every replica spends from the same budgets (one
    /// statement per check) or each from its own memory.
    pub shared: bool,
    pub login_throttle_after: u32,
    pub resend_cooldown: Duration,
    pub max_message_size: usize,
}

/// # Errors
/// The first invalid variable.
pub fn limits<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<LimitSettings, ConfigError> {
    let max_message_size: usize = env.parsed("IDENTITY_MAX_MESSAGE_SIZE", 64 * 1024)?;
    if max_message_size < 1024 {
        return Err(error("IDENTITY_MAX_MESSAGE_SIZE", "must be at least 1024 bytes"));
    }
    Ok(LimitSettings {
        per_address: env.parsed("IDENTITY_RATE_LIMIT_PER_ADDRESS", 60)?,
        per_email: env.parsed("IDENTITY_RATE_LIMIT_PER_EMAIL", 20)?,
        refresh_per_address: env.parsed("IDENTITY_RATE_LIMIT_REFRESH_PER_ADDRESS", 600)?,
        shared: env.boolean("IDENTITY_RATE_LIMITS_SHARED", true)?,
        login_throttle_after: env.parsed("IDENTITY_LOGIN_THROTTLE_AFTER", 5)?,
        resend_cooldown: env.duration("IDENTITY_RESEND_COOLDOWN", Duration::from_secs(60))?,
        max_message_size,
    })
}
