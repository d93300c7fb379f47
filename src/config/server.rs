//! The gRPC front: where it listens, whom it trusts, how it answers.

use std::net::SocketAddr;

use super::{ConfigError, Source, error};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub grpc_addr: SocketAddr,
    /// Metadata header a trusted proxy sets to the caller's address.
    pub trusted_client_ip_header: Option<String>,
    /// Lower-case hex SHA-256 of the accepted admin API keys.
    pub admin_api_key_hashes: Vec<String>,
    pub signup_enumeration_safe: bool,
}

/// # Errors
/// The first invalid variable.
pub fn server<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<ServerSettings, ConfigError> {
    Ok(ServerSettings {
        grpc_addr: env.parsed("IDENTITY_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
        trusted_client_ip_header: env.get("IDENTITY_TRUSTED_CLIENT_IP_HEADER").map(|h| h.trim().to_ascii_lowercase()),
        admin_api_key_hashes: parse_key_hashes(env.get("IDENTITY_ADMIN_API_KEY_HASHES"))?,
        signup_enumeration_safe: env.boolean("IDENTITY_SIGNUP_ENUMERATION_SAFE", false)?,
    })
}

fn parse_key_hashes(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|hash| {
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                Ok(hash.to_owned())
            } else {
                Err(error(
                    "IDENTITY_ADMIN_API_KEY_HASHES",
                    "each entry must be the lower-case hex SHA-256 of a key (64 characters)",
                ))
            }
        })
        .collect()
}
