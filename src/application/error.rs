use std::time::Duration;

use crate::domain::{
    LoginRefusal,
    ports::{HashingError, InsertUserError, InvalidAccessToken, InvalidRefreshToken, RepositoryError},
};

/// One invalid field of a request, with the reason in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: &'static str,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: &'static str, description: impl ToString) -> Self {
        Self { field, description: description.to_string() }
    }
}

/// Why a two-factor operation does not apply to the account as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MfaRefusal {
    #[error("two-factor login is not configured on this server")]
    NotConfigured,
    #[error("two-factor login is already on; turn it off first")]
    AlreadyEnabled,
    #[error("two-factor login is not on")]
    NotEnabled,
    #[error("no enrolment is pending, or it expired; begin it again")]
    NoPendingEnrollment,
}

impl MfaRefusal {
    /// The `google.rpc.ErrorInfo` reason.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::NotConfigured => "MFA_NOT_CONFIGURED",
            Self::AlreadyEnabled => "MFA_ALREADY_ENABLED",
            Self::NotEnabled => "MFA_NOT_ENABLED",
            Self::NoPendingEnrollment => "MFA_ENROLLMENT_NOT_PENDING",
        }
    }
}

/// A right password for an account with a second factor: the challenge to
/// complete the login with.
#[derive(Debug)]
pub struct MfaChallengeIssued {
    pub challenge: secrecy::SecretString,
    pub expires_at: time::OffsetDateTime,
}

/// Every outcome the transport must tell apart. Internals travel in
/// `Unavailable`/`Unexpected` for the log, never to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    #[error("invalid input: {0:?}")]
    InvalidInput(Vec<FieldViolation>),
    #[error("the email address is already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately one variant.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the email address is not verified")]
    EmailNotVerified,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the verification token is invalid, used or expired")]
    InvalidVerificationToken,
    #[error("the password reset token is invalid, used or expired")]
    InvalidResetToken,
    #[error("the email change token is invalid, used or expired")]
    InvalidEmailChangeToken,
    #[error("the access token is not acceptable: {0}")]
    InvalidAccessToken(#[from] InvalidAccessToken),
    #[error("{0}")]
    InvalidRefreshToken(#[from] InvalidRefreshToken),
    #[error("the server is saturated")]
    Saturated { retry_after: Duration },
    /// Too many calls from one address or for one account, or too many failed logins.
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("not found")]
    NotFound,
    /// No session with this id that belongs to the caller and is still live.
    #[error("no such session")]
    SessionNotFound,
    /// The password was right; the login needs a second factor.
    #[error("a second factor is required")]
    MfaRequired(MfaChallengeIssued),
    /// The login challenge is unknown, expired, spent or out of attempts.
    #[error("the login challenge is invalid, expired or used up")]
    InvalidMfaChallenge,
    /// A wrong, replayed or used code to complete a login.
    #[error("invalid second factor")]
    InvalidSecondFactor,
    #[error("{0}")]
    Mfa(#[from] MfaRefusal),
    /// The account kept changing under this call (its address, between the
    /// read the change was built from and the row lock), more times than it
    /// retried: the caller may retry.
    #[error("the account changed concurrently")]
    ChangedConcurrently,

    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApplicationError {
    pub fn invalid_field(field: &'static str, description: impl ToString) -> Self {
        Self::InvalidInput(vec![FieldViolation::new(field, description)])
    }
}

impl From<RepositoryError> for ApplicationError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(source) => Self::Unavailable(source),
            RepositoryError::Unexpected(source) => Self::Unexpected(source),
        }
    }
}

impl From<InsertUserError> for ApplicationError {
    fn from(error: InsertUserError) -> Self {
        match error {
            InsertUserError::DuplicateEmail => Self::EmailTaken,
            InsertUserError::Repository(error) => error.into(),
        }
    }
}

impl From<HashingError> for ApplicationError {
    fn from(error: HashingError) -> Self {
        match error {
            HashingError::Saturated { retry_after } => Self::Saturated { retry_after },
            HashingError::Unexpected(source) => Self::Unexpected(source),
        }
    }
}

impl From<LoginRefusal> for ApplicationError {
    fn from(refusal: LoginRefusal) -> Self {
        match refusal {
            LoginRefusal::EmailNotVerified => Self::EmailNotVerified,
            LoginRefusal::Disabled => Self::AccountDisabled,
        }
    }
}
