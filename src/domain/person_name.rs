//! Optional human names: display name, first and last name.

use std::fmt;

pub const MAX_NAME_LENGTH: usize = 100;

/// A trimmed, non-empty name of at most [`MAX_NAME_LENGTH`] characters without
/// control characters or bidirectional overrides (which can disguise text).
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonNameError {
    #[error("must be at most {MAX_NAME_LENGTH} characters")]
    TooLong,
    #[error("must not contain control characters or bidirectional overrides")]
    ControlCharacter,
}

impl PersonName {
    /// An empty or all-blank input means "no name given".
    ///
    /// # Errors
    /// Too long, or containing control characters.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, PersonNameError> {
        if raw.len() > MAX_NAME_LENGTH * 4 + 64 {
            return Err(PersonNameError::TooLong);
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().count() > MAX_NAME_LENGTH {
            return Err(PersonNameError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
            return Err(PersonNameError::ControlCharacter);
        }
        Ok(Some(Self(trimmed.to_owned())))
    }

    /// A name from elsewhere (an import) made to fit the rules: control
    /// characters and bidirectional overrides removed, trimmed, cut to
    /// [`MAX_NAME_LENGTH`] characters; `None` when nothing is left.
    pub fn fit(raw: &str) -> Option<Self> {
        let kept: String = raw
            .chars()
            .filter(|c| !(c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')))
            .collect();
        let cut: String = kept.trim().chars().take(MAX_NAME_LENGTH).collect();
        Self::parse_optional(&cut).ok().flatten()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    // Names are personal data; logs do not need them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imported_name_is_made_to_fit_or_dropped() {
        assert_eq!(PersonName::fit("  Ada\u{0007} Love\u{202E}lace ").unwrap().as_str(), "Ada Lovelace");
        assert_eq!(PersonName::fit(&"é".repeat(150)).unwrap().as_str().chars().count(), MAX_NAME_LENGTH);
        assert!(PersonName::fit(" \u{0000}\t ").is_none());
    }

    #[test]
    fn blank_means_absent() {
        assert_eq!(PersonName::parse_optional("   "), Ok(None));
    }

    #[test]
    fn names_are_trimmed() {
        assert_eq!(PersonName::parse_optional("  Ada Lovelace ").unwrap().unwrap().as_str(), "Ada Lovelace");
    }

    #[test]
    fn limits_are_counted_in_characters() {
        assert!(PersonName::parse_optional(&"é".repeat(100)).unwrap().is_some());
        assert_eq!(PersonName::parse_optional(&"é".repeat(101)), Err(PersonNameError::TooLong));
    }

    #[test]
    fn control_characters_and_overrides_are_refused() {
        assert_eq!(PersonName::parse_optional("Ada\nLovelace"), Err(PersonNameError::ControlCharacter));
        assert_eq!(PersonName::parse_optional("Ada\u{202E}ecalevol"), Err(PersonNameError::ControlCharacter));
    }
}
