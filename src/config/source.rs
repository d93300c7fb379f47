//! Typed reads of configuration variables, with errors that name the variable.

use std::time::Duration;

use super::{ConfigError, error};

/// Where variables come from: the process environment, or a lookup in tests.
pub struct Source<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Source<F> {
    /// The value, unless unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, name: &'static str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            Some(raw) => raw.trim().parse().map_err(|e| error(name, format!("{raw:?}: {e}"))),
            None => Ok(default),
        }
    }

    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            Some(raw) => parse_duration(&raw).map_err(|e| error(name, e)),
            None => Ok(default),
        }
    }

    pub fn positive_duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let value = self.duration(name, default)?;
        if value.is_zero() {
            return Err(error(name, "must be greater than zero"));
        }
        Ok(value)
    }

    pub fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(error(name, format!("{v:?} is not a boolean (true or false)"))),
        }
    }
}

/// Parses `250ms`, `90s`, `10m`, `24h`, `30d`, or plain seconds.
///
/// # Errors
/// Anything else.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{raw:?} is not a duration such as 90s, 10m, 24h or 30d"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "" | "s" => value,
        "m" => value.saturating_mul(60),
        "h" => value.saturating_mul(3600),
        "d" => value.saturating_mul(86_400),
        _ => return Err(format!("{raw:?} has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(seconds))
}
