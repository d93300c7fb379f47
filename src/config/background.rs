//! The server's background work: `IDENTITY_OUTBOX_*` for the relay and
//! `IDENTITY_PRUNE_INTERVAL`, `IDENTITY_PENDING_SIGNUP_RETENTION` for pruning.

use std::time::Duration;

use super::{ConfigError, Source};
use crate::workers::RelaySettings;

#[derive(Debug, Clone, Copy)]
pub struct PruningSettings {
    /// How often stale sessions, throttles, tokens and abandoned sign-ups are pruned.
    pub interval: Duration,
    /// How long after their last verification link expired a sign-up that was
    /// never verified is deleted.
    pub pending_signup_retention: Duration,
}

/// # Errors
/// The first invalid variable.
pub fn outbox<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<RelaySettings, ConfigError> {
    let defaults = RelaySettings::default();
    Ok(RelaySettings {
        poll_interval: env.positive_duration("IDENTITY_OUTBOX_POLL_INTERVAL", defaults.poll_interval)?,
        retention: env.positive_duration("IDENTITY_OUTBOX_RETENTION", defaults.retention)?,
        ..defaults
    })
}

/// # Errors
/// The first invalid variable.
pub fn pruning<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<PruningSettings, ConfigError> {
    Ok(PruningSettings {
        interval: env.positive_duration("IDENTITY_PRUNE_INTERVAL", Duration::from_secs(600))?,
        pending_signup_retention: env
            .positive_duration("IDENTITY_PENDING_SIGNUP_RETENTION", Duration::from_secs(7 * 86_400))?,
    })
}
