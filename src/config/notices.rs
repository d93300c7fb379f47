//! Which security notices are emailed: `IDENTITY_NOTIFY_PASSWORD_CHANGED`,
//! `IDENTITY_NOTIFY_EMAIL_CHANGED` (both on by default) and
//! `IDENTITY_NOTIFY_NEW_DEVICE` (off by default: it costs a write per login,
//! and the first login from each device is then remembered).

use super::{ConfigError, Source};
use crate::application::Notices;

/// # Errors
/// A value that is not a boolean.
pub fn notices<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<Notices, ConfigError> {
    let defaults = Notices::default();
    Ok(Notices {
        password_changed: env.boolean("IDENTITY_NOTIFY_PASSWORD_CHANGED", defaults.password_changed)?,
        email_changed: env.boolean("IDENTITY_NOTIFY_EMAIL_CHANGED", defaults.email_changed)?,
        new_device: env.boolean("IDENTITY_NOTIFY_NEW_DEVICE", defaults.new_device)?,
    })
}
