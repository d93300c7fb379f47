//! Email addresses in their canonical form.
//!
//! The canonical form is what we store, compare and send to: trimmed, lower-cased,
//! the domain in ASCII (IDNA). Parsing is a single linear pass with no regular
//! expression, so hostile input cannot make it slow (the seed's regex took seconds
//! on 26 characters).

use std::fmt;

/// RFC 5321 limits the forward path to 256 octets including the angle brackets.
pub const MAX_EMAIL_LENGTH: usize = 254;
const MAX_LOCAL_PART_LENGTH: usize = 64;
const MAX_LABEL_LENGTH: usize = 63;

/// A syntactically valid email address in canonical form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is required")]
    Empty,
    #[error("must be at most {MAX_EMAIL_LENGTH} characters")]
    TooLong,
    #[error("must not contain control or invisible characters")]
    InvisibleCharacter,
    #[error("must contain a plain ASCII '@' (a look-alike such as '＠' is not accepted)")]
    LookalikeAt,
    #[error("must contain exactly one '@' between a local part and a domain")]
    MissingAt,
    #[error(
        "the part before '@' must use ASCII letters, digits and !#$%&'*+-/=?^_`{{|}}~ with single dots between them"
    )]
    InvalidLocalPart,
    #[error("the part before '@' must be at most {MAX_LOCAL_PART_LENGTH} characters")]
    LocalPartTooLong,
    #[error("the domain is not a valid internet domain name")]
    InvalidDomain,
}

impl Email {
    /// Canonicalises and validates untrusted input.
    ///
    /// # Errors
    /// Returns the first rule the input breaks.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        // Bound the work before doing any: a 1 MB string is refused without a scan
        // of its characters. 4 bytes per character is the UTF-8 maximum.
        if raw.len() > MAX_EMAIL_LENGTH * 4 + 64 {
            return Err(EmailError::TooLong);
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        // Conversion to ASCII never shortens an address, so this bound is safe.
        if trimmed.chars().count() > MAX_EMAIL_LENGTH {
            return Err(EmailError::TooLong);
        }
        if trimmed.chars().any(is_invisible_or_control) {
            return Err(EmailError::InvisibleCharacter);
        }
        if trimmed.chars().any(is_lookalike_at) {
            return Err(EmailError::LookalikeAt);
        }
        let mut parts = trimmed.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::MissingAt);
        };
        let local = canonical_local_part(local)?;
        let domain = canonical_domain(domain)?;
        let email = format!("{local}@{domain}");
        if email.len() > MAX_EMAIL_LENGTH {
            return Err(EmailError::TooLong);
        }
        Ok(Self(email))
    }

    /// Rebuilds an address read back from storage, where it was stored canonical.
    ///
    /// # Errors
    /// Fails if the stored value is not canonical (a corrupted row).
    pub fn hydrate(stored: String) -> Result<Self, EmailError> {
        let parsed = Self::parse(&stored)?;
        if parsed.0 == stored { Ok(parsed) } else { Err(EmailError::InvalidDomain) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`, used as a greeting when the user gave no name.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    // Addresses are personal data: logs show the domain only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.rsplit('@').next().unwrap_or_default();
        write!(f, "Email(***@{domain})")
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn is_invisible_or_control(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                 // soft hyphen
            | '\u{034F}'               // combining grapheme joiner
            | '\u{061C}'               // arabic letter mark
            | '\u{115F}' | '\u{1160}'  // hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'  // zero-width space/joiners, LRM/RLM
            | '\u{202A}'..='\u{202E}'  // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'  // word joiner, invisible operators, bidi isolates
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'  // variation selectors
            | '\u{FEFF}'               // byte order mark
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}' // tags
        )
        // Whitespace inside an address is never valid (trimmed ends are gone already).
        || c.is_whitespace()
}

fn is_lookalike_at(c: char) -> bool {
    matches!(c, '\u{FF20}' | '\u{FE6B}' | '\u{24D0}')
}

fn canonical_local_part(local: &str) -> Result<String, EmailError> {
    if local.is_empty() {
        return Err(EmailError::MissingAt);
    }
    if !local.is_ascii() {
        // Homoglyphs (Cyrillic 'а' for Latin 'a') and fullwidth forms are refused,
        // not folded: folding would let two different inputs name one mailbox.
        return Err(EmailError::InvalidLocalPart);
    }
    if local.len() > MAX_LOCAL_PART_LENGTH {
        return Err(EmailError::LocalPartTooLong);
    }
    let valid_atoms = local.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    if !valid_atoms {
        return Err(EmailError::InvalidLocalPart);
    }
    Ok(local.to_ascii_lowercase())
}

/// RFC 5322 `atext`: the characters allowed in an unquoted local part.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn canonical_domain(domain: &str) -> Result<String, EmailError> {
    if domain.is_empty() {
        return Err(EmailError::MissingAt);
    }
    let lowered = domain.to_lowercase();
    let ascii = idna::domain_to_ascii_strict(&lowered).map_err(|_| EmailError::InvalidDomain)?;
    // UTS 46 maps some characters to others (fullwidth letters to ASCII, for one).
    // We accept only input that already is its own Unicode form, so nothing is
    // silently folded into a different address.
    let (unicode, result) = idna::domain_to_unicode(&ascii);
    if result.is_err() || unicode != lowered {
        return Err(EmailError::InvalidDomain);
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(EmailError::InvalidDomain);
    }
    let labels_valid = labels.iter().all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LENGTH
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let tld = labels.last().copied().unwrap_or_default();
    // An all-numeric top-level label means an IP address, not a mail domain.
    if !labels_valid || tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmailError::InvalidDomain);
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        Email::parse(raw).unwrap().as_str().to_owned()
    }

    #[test]
    fn canonical_form_is_trimmed_and_lower_cased() {
        assert_eq!(ok("  ALICE@Example.COM \n"), "alice@example.com");
    }

    #[test]
    fn plus_addressing_and_long_top_level_domains_are_accepted() {
        assert_eq!(ok("a+tag@mail.example.photography"), "a+tag@mail.example.photography");
        assert_eq!(ok("o'brien@example.museum"), "o'brien@example.museum");
    }

    #[test]
    fn unicode_domains_are_converted_to_ascii() {
        assert_eq!(ok("user@bücher.example"), "user@xn--bcher-kva.example");
        assert_eq!(ok("user@BÜCHER.example"), "user@xn--bcher-kva.example");
    }

    #[test]
    fn fullwidth_at_is_refused_not_folded() {
        assert_eq!(Email::parse("alice＠example.com"), Err(EmailError::LookalikeAt));
    }

    #[test]
    fn fullwidth_domain_letters_are_refused_not_folded() {
        assert_eq!(Email::parse("a@ｅｘａｍｐｌｅ.com"), Err(EmailError::InvalidDomain));
    }

    #[test]
    fn homoglyphs_in_the_local_part_are_refused() {
        // Cyrillic 'а' (U+0430) in place of the Latin one.
        assert_eq!(Email::parse("\u{430}lice@example.com"), Err(EmailError::InvalidLocalPart));
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for raw in [
            "al\u{200B}ice@example.com",
            "alice@exa\u{0000}mple.com",
            "al\u{202E}ice@example.com",
            "al ice@example.com",
        ] {
            assert_eq!(Email::parse(raw), Err(EmailError::InvisibleCharacter), "{raw:?}");
        }
    }

    #[test]
    fn structural_errors_are_named() {
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        assert_eq!(Email::parse("alice"), Err(EmailError::MissingAt));
        assert_eq!(Email::parse("a@b@example.com"), Err(EmailError::MissingAt));
        assert_eq!(Email::parse("@example.com"), Err(EmailError::MissingAt));
        assert_eq!(Email::parse("alice@"), Err(EmailError::MissingAt));
        assert_eq!(Email::parse(".alice@example.com"), Err(EmailError::InvalidLocalPart));
        assert_eq!(Email::parse("al..ice@example.com"), Err(EmailError::InvalidLocalPart));
        assert_eq!(Email::parse("alice@localhost"), Err(EmailError::InvalidDomain));
        assert_eq!(Email::parse("alice@127.0.0.1"), Err(EmailError::InvalidDomain));
        assert_eq!(Email::parse("alice@-example.com"), Err(EmailError::InvalidDomain));
        assert_eq!(Email::parse("alice@exa_mple.com"), Err(EmailError::InvalidDomain));
    }

    #[test]
    fn length_limits_hold() {
        let local = "a".repeat(65);
        assert_eq!(Email::parse(&format!("{local}@example.com")), Err(EmailError::LocalPartTooLong));
        let domain = format!("{}.com", ["abcdefghij"; 25].join("."));
        assert_eq!(Email::parse(&format!("a@{domain}")), Err(EmailError::TooLong));
        assert_eq!(Email::parse(&"a".repeat(1_000_000)), Err(EmailError::TooLong));
    }

    #[test]
    fn debug_hides_the_local_part() {
        let email = Email::parse("alice@example.com").unwrap();
        assert_eq!(format!("{email:?}"), "Email(***@example.com)");
    }

    #[test]
    fn hydrate_accepts_only_canonical_values() {
        assert!(Email::hydrate("alice@example.com".into()).is_ok());
        assert!(Email::hydrate("Alice@example.com".into()).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in "\\PC{0,300}") {
            let _ = Email::parse(&raw);
        }

        #[test]
        fn canonical_form_is_a_fixed_point(local in "[a-zA-Z0-9+_-]{1,20}", domain in "[a-zA-Z]{1,20}\\.[a-zA-Z]{2,10}") {
            let first = Email::parse(&format!("{local}@{domain}")).unwrap();
            let second = Email::parse(first.as_str()).unwrap();
            prop_assert_eq!(first, second);
        }
    }
}
