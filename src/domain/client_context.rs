//! What a session remembers of the device that opened or refreshed it, so that
//! its user can tell their sessions apart (and spot one that is not theirs).

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
};

use sha2::{Digest, Sha256};

use super::ClientAddress;

pub const MAX_USER_AGENT_LENGTH: usize = 256;

/// A trimmed, non-empty user agent of at most [`MAX_USER_AGENT_LENGTH`]
/// characters without control characters (it is shown to the user and logged).
#[derive(Clone, PartialEq, Eq)]
pub struct UserAgent(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientContextError {
    #[error("must be at most {MAX_USER_AGENT_LENGTH} characters")]
    UserAgentTooLong,
    #[error("must not contain control characters")]
    UserAgentControlCharacter,
    #[error("is not an IPv4 or IPv6 address")]
    InvalidAddress,
}

fn is_unwanted(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl UserAgent {
    /// A user agent the caller vouches for (a field of the request). Blank
    /// means "unknown".
    ///
    /// # Errors
    /// Too long, or containing control characters.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, ClientContextError> {
        // Bounded work whatever the input's size: count no further than needed.
        if raw.len() > MAX_USER_AGENT_LENGTH * 4 + 64 {
            return Err(ClientContextError::UserAgentTooLong);
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().count() > MAX_USER_AGENT_LENGTH {
            return Err(ClientContextError::UserAgentTooLong);
        }
        if trimmed.chars().any(is_unwanted) {
            return Err(ClientContextError::UserAgentControlCharacter);
        }
        Ok(Some(Self(trimmed.to_owned())))
    }

    /// A user agent from transport metadata, which no caller chose for the
    /// session: cut to the bound and cleaned rather than refused, since
    /// refusing the call for its HTTP library's header would be unhelpful.
    pub fn lenient(raw: &str) -> Option<Self> {
        let cleaned: String = raw.chars().filter(|c| !is_unwanted(*c)).take(MAX_USER_AGENT_LENGTH).collect();
        let trimmed = cleaned.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }

    /// A value read back from storage, written by [`UserAgent::parse_optional`]
    /// or [`UserAgent::lenient`]: cleaned again, so a hand-edited row cannot
    /// break the bound either.
    pub fn hydrate(stored: &str) -> Option<Self> {
        Self::lenient(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAgent({:?})", self.0)
    }
}

impl fmt::Display for UserAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses an address a caller vouches for. Blank means "unknown".
///
/// # Errors
/// Not an IPv4 or IPv6 address.
pub fn parse_client_address(raw: &str) -> Result<Option<ClientAddress>, ClientContextError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() > 64 {
        return Err(ClientContextError::InvalidAddress);
    }
    trimmed.parse::<IpAddr>().map(|ip| Some(ClientAddress::new(ip))).map_err(|_| ClientContextError::InvalidAddress)
}

/// The device behind a login or a refresh, as far as it is known: the calling
/// backend's word for its end user, or else what the transport saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext {
    pub user_agent: Option<UserAgent>,
    pub address: Option<ClientAddress>,
}

impl ClientContext {
    /// The network the address lies in, as a new-device notice tells it and as
    /// "the same device" compares it: the IPv4 /24 or the IPv6 /48, so that a
    /// phone moving between addresses of one provider is not new each time.
    pub fn coarse_address(&self) -> Option<String> {
        self.address.map(|address| match address.ip() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1_u128 << 80) - 1);
                format!("{}/48", Ipv6Addr::from(prefix))
            }
        })
    }

    /// What a user's known devices are remembered by: a digest of the user
    /// agent and the coarse address, so that the table of known devices holds
    /// neither. `None` when neither is known (nothing to tell devices apart by).
    pub fn fingerprint(&self) -> Option<DeviceFingerprint> {
        if self.user_agent.is_none() && self.address.is_none() {
            return None;
        }
        let mut digest = Sha256::new();
        digest.update(self.user_agent.as_ref().map_or("", UserAgent::as_str).as_bytes());
        // A separator no user agent contains (control characters are refused).
        digest.update([0]);
        digest.update(self.coarse_address().unwrap_or_default().as_bytes());
        Some(DeviceFingerprint(digest.finalize().into()))
    }
}

/// A device as new-device notices compare them (see [`ClientContext::fingerprint`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceFingerprint([u8; 32]);

impl DeviceFingerprint {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for DeviceFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceFingerprint({})", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(user_agent: &str, address: &str) -> ClientContext {
        ClientContext {
            user_agent: UserAgent::parse_optional(user_agent).unwrap(),
            address: parse_client_address(address).unwrap(),
        }
    }

    #[test]
    fn coarse_addresses_are_the_ipv4_slash_24_and_the_ipv6_slash_48() {
        assert_eq!(context("", "192.0.2.77").coarse_address().unwrap(), "192.0.2.0/24");
        assert_eq!(context("", "2001:db8:aaaa:bbbb::1").coarse_address().unwrap(), "2001:db8:aaaa::/48");
        assert_eq!(context("curl", "").coarse_address(), None);
    }

    #[test]
    fn a_device_is_the_same_within_its_network_and_new_with_another_agent_or_network() {
        let phone = context("Firefox/133.0 (phone)", "203.0.113.9").fingerprint().unwrap();
        assert_eq!(context("Firefox/133.0 (phone)", "203.0.113.200").fingerprint().unwrap(), phone);
        assert_ne!(context("Firefox/134.0 (phone)", "203.0.113.9").fingerprint().unwrap(), phone);
        assert_ne!(context("Firefox/133.0 (phone)", "198.51.100.9").fingerprint().unwrap(), phone);
        assert_eq!(ClientContext::default().fingerprint(), None);
        assert_eq!(phone.to_hex().len(), 64);
    }

    #[test]
    fn a_user_agent_is_trimmed_and_blank_means_unknown() {
        assert_eq!(UserAgent::parse_optional("  curl/8.0 ").unwrap().unwrap().as_str(), "curl/8.0");
        assert_eq!(UserAgent::parse_optional("   ").unwrap(), None);
    }

    #[test]
    fn a_user_agent_of_256_characters_is_accepted_and_one_more_is_refused() {
        let longest = "é".repeat(MAX_USER_AGENT_LENGTH);
        assert!(UserAgent::parse_optional(&longest).unwrap().is_some());
        let too_long = "é".repeat(MAX_USER_AGENT_LENGTH + 1);
        assert_eq!(UserAgent::parse_optional(&too_long), Err(ClientContextError::UserAgentTooLong));
        assert_eq!(UserAgent::parse_optional(&"a".repeat(1 << 20)), Err(ClientContextError::UserAgentTooLong));
    }

    #[test]
    fn control_characters_are_refused_from_callers_and_dropped_from_metadata() {
        assert_eq!(UserAgent::parse_optional("evil\nline"), Err(ClientContextError::UserAgentControlCharacter));
        assert_eq!(UserAgent::lenient("evil\nline").unwrap().as_str(), "evilline");
        assert_eq!(UserAgent::lenient(&"x".repeat(1000)).unwrap().as_str().len(), MAX_USER_AGENT_LENGTH);
        assert_eq!(UserAgent::lenient("\u{7}"), None);
    }

    #[test]
    fn addresses_are_parsed_and_mapped_ipv4_is_plain_ipv4() {
        assert_eq!(parse_client_address("::ffff:192.0.2.7").unwrap().unwrap().to_string(), "192.0.2.7");
        assert_eq!(parse_client_address(" 2001:db8::1 ").unwrap().unwrap().to_string(), "2001:db8::1");
        assert_eq!(parse_client_address("").unwrap(), None);
        assert_eq!(parse_client_address("192.0.2.300"), Err(ClientContextError::InvalidAddress));
        assert_eq!(parse_client_address("example.com"), Err(ClientContextError::InvalidAddress));
    }
}
