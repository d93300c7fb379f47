//! Per-caller and per-email rate limits on the RPCs that cost a hash or send an
//! email (SignUp, Login, ResendVerificationEmail, RequestPasswordReset).

use std::net::IpAddr;

use tonic::{Request, Status};

use crate::{
    application::{ApplicationError, RateLimiter},
    domain::Email,
};

pub struct CallLimits {
    pub per_address: RateLimiter,
    pub per_email: RateLimiter,
    /// Set behind a proxy: the metadata header it writes the caller's address to.
    pub trusted_header: Option<String>,
}

impl CallLimits {
    /// The caller's address, as [`client_address`] finds it.
    pub fn client_address<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        client_address(request, self.trusted_header.as_deref())
    }

    /// # Errors
    /// RESOURCE_EXHAUSTED with RetryInfo when either limit is reached.
    pub fn check<T>(&self, request: &Request<T>, email: Option<&Email>) -> Result<(), Status> {
        if let Some(address) = self.client_address(request) {
            self.per_address.check(&address.to_string()).map_err(limited)?;
        }
        if let Some(email) = email {
            self.per_email.check(email.as_str()).map_err(limited)?;
        }
        Ok(())
    }
}

/// The caller's address: from the trusted proxy header when configured (its
/// right-most entry, the one the nearest proxy added), else the TCP peer.
pub fn client_address<T>(request: &Request<T>, trusted_header: Option<&str>) -> Option<IpAddr> {
    if let Some(header) = trusted_header {
        let from_header = request
            .metadata()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if from_header.is_some() {
            return from_header;
        }
    }
    request.remote_addr().map(|addr| addr.ip())
}

fn limited(retry_after: std::time::Duration) -> Status {
    tracing::info!(retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX), "call rate limited");
    ApplicationError::RateLimited { retry_after }.into()
}
