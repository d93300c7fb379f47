//! Per-caller and per-email rate limits on every RPC that takes a password or a
//! secret token, or that sends an email. Each operation has budgets of its own,
//! so that spending one (twenty reset requests naming a victim, say) never
//! blocks another (the victim's login). On PostgreSQL every replica spends
//! from the same budgets (unless `IDENTITY_RATE_LIMITS_SHARED=false`).

use std::net::IpAddr;

use tonic::{Request, Status};

use crate::{
    application::{ApplicationError, RateLimiter},
    domain::{ClientAddress, Email},
};

/// The rate-limited operations, each with budgets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    SignUp,
    Login,
    ResendVerificationEmail,
    VerifyEmail,
    RequestPasswordReset,
    ResetPassword,
    ChangePassword,
    RefreshSession,
    Logout,
    RequestEmailChange,
    ConfirmEmailChange,
    CompleteMfaLogin,
    /// Enrolment, disabling and new recovery codes: each takes a password or a code.
    ManageMfa,
    /// ListSessions, RevokeSession and LogoutAll: each takes an access token
    /// and reads or writes the database.
    ManageSessions,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::SignUp => "sign_up",
            Self::Login => "login",
            Self::ResendVerificationEmail => "resend_verification_email",
            Self::VerifyEmail => "verify_email",
            Self::RequestPasswordReset => "request_password_reset",
            Self::ResetPassword => "reset_password",
            Self::ChangePassword => "change_password",
            Self::RefreshSession => "refresh_session",
            Self::Logout => "logout",
            Self::RequestEmailChange => "request_email_change",
            Self::ConfirmEmailChange => "confirm_email_change",
            Self::CompleteMfaLogin => "complete_mfa_login",
            Self::ManageMfa => "manage_mfa",
            Self::ManageSessions => "manage_sessions",
        }
    }

    /// Backends refresh and show sessions on behalf of many users at once:
    /// these get the larger `IDENTITY_RATE_LIMIT_REFRESH_PER_ADDRESS` budget.
    fn is_session_upkeep(self) -> bool {
        matches!(self, Self::RefreshSession | Self::Logout | Self::ManageSessions)
    }
}

pub struct CallLimits {
    pub per_address: RateLimiter,
    pub per_address_refresh: RateLimiter,
    pub per_email: RateLimiter,
    /// Set behind a proxy: the metadata header it writes the caller's address to.
    /// Only safe when that proxy overwrites whatever the client sent.
    pub trusted_header: Option<String>,
}

impl CallLimits {
    /// The caller's address, as [`client_address`] finds it.
    pub fn client_address<T>(&self, request: &Request<T>) -> Option<ClientAddress> {
        client_address(request, self.trusted_header.as_deref())
    }

    /// Spends one call of `operation` from the caller's address (its /64 for
    /// IPv6) and returns that address.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED with RetryInfo when the budget is spent.
    pub async fn check_address<T>(
        &self,
        request: &Request<T>,
        operation: Operation,
    ) -> Result<Option<ClientAddress>, Status> {
        let client = self.client_address(request);
        if let Some(address) = &client {
            let limiter = if operation.is_session_upkeep() { &self.per_address_refresh } else { &self.per_address };
            limiter.check(&format!("{}:{}", operation.name(), address.bucket())).await.map_err(limited)?;
        }
        Ok(client)
    }

    /// Spends one call of `operation` naming `email`. Logins count per email
    /// *and* address, so that a stranger's attempts never spend the owner's.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED with RetryInfo when the budget is spent.
    pub async fn check_email(
        &self,
        operation: Operation,
        email: &Email,
        client: Option<&ClientAddress>,
    ) -> Result<(), Status> {
        let key = match operation {
            Operation::Login => {
                format!(
                    "{}:{}:{}",
                    operation.name(),
                    email.as_str(),
                    client.map_or_else(String::new, ClientAddress::bucket)
                )
            }
            _ => format!("{}:{}", operation.name(), email.as_str()),
        };
        self.per_email.check(&key).await.map_err(limited)
    }
}

/// The caller's address: from the trusted proxy header when configured (its
/// right-most entry, the one the nearest proxy added), else the TCP peer. The
/// header is only to be trusted behind a proxy that overwrites it.
pub fn client_address<T>(request: &Request<T>, trusted_header: Option<&str>) -> Option<ClientAddress> {
    if let Some(header) = trusted_header {
        let from_header = request
            .metadata()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(address) = from_header {
            return Some(ClientAddress::new(address));
        }
    }
    request.remote_addr().map(|addr| ClientAddress::new(addr.ip()))
}

fn limited(retry_after: std::time::Duration) -> Status {
    tracing::info!(retry_after_ms = crate::domain::durations::millis(retry_after), "call rate limited");
    ApplicationError::RateLimited { retry_after }.into()
}
