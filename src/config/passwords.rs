//! `IDENTITY_PASSWORD_MIN_LENGTH` and the argon2 costs.

use super::{ConfigError, Source, error};
use crate::{domain::password::MAX_PASSWORD_LENGTH, infrastructure::Argon2Settings};

#[derive(Debug, Clone, Copy)]
pub struct PasswordSettings {
    pub min_length: usize,
    pub argon2: Argon2Settings,
}

/// # Errors
/// The first invalid variable.
pub fn passwords<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<PasswordSettings, ConfigError> {
    let min_length: usize = env.parsed("IDENTITY_PASSWORD_MIN_LENGTH", 12)?;
    if !(8..=MAX_PASSWORD_LENGTH).contains(&min_length) {
        return Err(error("IDENTITY_PASSWORD_MIN_LENGTH", format!("must be between 8 and {MAX_PASSWORD_LENGTH}")));
    }
    let recommended = Argon2Settings::recommended();
    let argon2 = Argon2Settings {
        m_cost: env.parsed("IDENTITY_ARGON2_M_COST", recommended.m_cost)?,
        t_cost: env.parsed("IDENTITY_ARGON2_T_COST", recommended.t_cost)?,
        p_cost: env.parsed("IDENTITY_ARGON2_P_COST", recommended.p_cost)?,
        max_concurrent: env.parsed("IDENTITY_ARGON2_MAX_CONCURRENT", recommended.max_concurrent)?,
        queue_timeout: env.positive_duration("IDENTITY_ARGON2_QUEUE_TIMEOUT", recommended.queue_timeout)?,
        nice: env.parsed("IDENTITY_ARGON2_NICE", recommended.nice)?,
    };
    if !(0..=19).contains(&argon2.nice) {
        return Err(error("IDENTITY_ARGON2_NICE", "must be between 0 (as the rest of the process) and 19"));
    }
    argon2.params().map_err(|e| error("IDENTITY_ARGON2_M_COST", format!("{e} (with the T and P costs given)")))?;
    if argon2.max_concurrent == 0 {
        return Err(error("IDENTITY_ARGON2_MAX_CONCURRENT", "must be at least 1"));
    }
    Ok(PasswordSettings { min_length, argon2 })
}
