//! The one mapping from application errors to gRPC statuses. Callers get a
//! precise code and actionable details; internals go to the log, once, with the
//! whole error chain, and never to the caller.

use secrecy::ExposeSecret;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::application::ApplicationError;

/// `google.rpc.ErrorInfo.domain` for our reasons.
pub const ERROR_DOMAIN: &str = "identity.v1";
/// The second factors `CompleteMfaLogin` takes, as `MFA_REQUIRED` lists them.
pub const MFA_METHODS: &str = "totp,recovery_code";

impl From<ApplicationError> for Status {
    fn from(error: ApplicationError) -> Self {
        match error {
            ApplicationError::InvalidInput(violations) => {
                let mut details = ErrorDetails::new();
                for violation in &violations {
                    details.add_bad_request_violation(violation.field, &violation.description);
                }
                let summary =
                    violations.iter().map(|v| format!("{} {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
                Status::with_error_details(Code::InvalidArgument, format!("invalid request: {summary}"), details)
            }
            ApplicationError::EmailTaken => Status::already_exists("a user with this email address already exists"),
            ApplicationError::InvalidCredentials => Status::unauthenticated("invalid email or password"),
            ApplicationError::EmailNotVerified => with_reason(
                Code::FailedPrecondition,
                "the email address is not verified yet; use the link we emailed, or ask for a new one",
                "EMAIL_NOT_VERIFIED",
            ),
            ApplicationError::AccountDisabled => {
                with_reason(Code::FailedPrecondition, "the account is disabled", "ACCOUNT_DISABLED")
            }
            ApplicationError::InvalidVerificationToken => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(
                    "token",
                    "is invalid, already used or expired; ask for a new verification email",
                );
                Status::with_error_details(
                    Code::InvalidArgument,
                    "invalid, used or expired verification token",
                    details,
                )
            }
            ApplicationError::InvalidResetToken => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(
                    "token",
                    "is invalid, already used or expired; ask for a new reset email",
                );
                Status::with_error_details(
                    Code::InvalidArgument,
                    "invalid, used or expired password reset token",
                    details,
                )
            }
            ApplicationError::InvalidEmailChangeToken => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(
                    "token",
                    "is invalid, already used or expired; ask for the email change again",
                );
                Status::with_error_details(
                    Code::InvalidArgument,
                    "invalid, used or expired email change token",
                    details,
                )
            }
            ApplicationError::RateLimited { retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                "too many attempts; retry later",
                ErrorDetails::with_retry_info(Some(round_up_to_second(retry_after))),
            ),
            ApplicationError::ChangedConcurrently => {
                Status::aborted("the account changed while this call ran; read it again and retry")
            }
            ApplicationError::NotFound => Status::not_found("no such user"),
            ApplicationError::SessionNotFound => Status::not_found("no such session"),
            ApplicationError::MfaRequired(issued) => {
                let metadata = std::collections::HashMap::from([
                    ("challenge".to_owned(), issued.challenge.expose_secret().to_owned()),
                    ("methods".to_owned(), MFA_METHODS.to_owned()),
                ]);
                Status::with_error_details(
                    Code::FailedPrecondition,
                    "a second factor is required: call CompleteMfaLogin with the challenge and a code",
                    ErrorDetails::with_error_info("MFA_REQUIRED", ERROR_DOMAIN, metadata),
                )
            }
            ApplicationError::InvalidMfaChallenge => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation("challenge", "is invalid, expired or used up; log in again");
                Status::with_error_details(
                    Code::InvalidArgument,
                    "invalid, expired or used-up login challenge",
                    details,
                )
            }
            ApplicationError::InvalidSecondFactor => Status::unauthenticated("invalid code"),
            ApplicationError::Mfa(refusal) => {
                with_reason(Code::FailedPrecondition, &refusal.to_string(), refusal.reason())
            }
            ApplicationError::InvalidAccessToken(reason) => {
                tracing::info!(reason = %reason, "access token refused");
                Status::unauthenticated("invalid or expired access token")
            }
            ApplicationError::InvalidRefreshToken(reason) => {
                tracing::info!(reason = %reason, "refresh token refused");
                Status::unauthenticated("invalid, expired or revoked refresh token")
            }
            ApplicationError::Saturated { retry_after } => {
                tracing::warn!(
                    retry_after_ms = crate::domain::durations::millis(retry_after),
                    "request shed: server saturated"
                );
                Status::with_error_details(
                    Code::ResourceExhausted,
                    "the server is busy; retry later",
                    ErrorDetails::with_retry_info(Some(retry_after)),
                )
            }
            ApplicationError::Unavailable(source) => {
                tracing::error!(error = format!("{source:#}"), "dependency unavailable");
                Status::with_error_details(
                    Code::Unavailable,
                    "the service is temporarily unavailable; retry later",
                    ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(1))),
                )
            }
            ApplicationError::Unexpected(source) => {
                tracing::error!(error = format!("{source:#}"), "unexpected error");
                Status::internal("internal error")
            }
        }
    }
}

/// Clients sleep on RetryInfo: whole seconds, never zero.
fn round_up_to_second(wait: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        .max(std::time::Duration::from_secs(1))
}

fn with_reason(code: Code, message: &str, reason: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::FieldViolation;

    #[test]
    fn field_violations_travel_as_bad_request_details() {
        let status = Status::from(ApplicationError::InvalidInput(vec![FieldViolation::new("email", "is required")]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "email");
    }

    #[test]
    fn unexpected_errors_leak_nothing() {
        let status = Status::from(ApplicationError::Unexpected(anyhow::anyhow!("password=hunter2 in SELECT")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn a_login_that_needs_a_second_factor_carries_the_challenge_and_the_methods() {
        let status = Status::from(ApplicationError::MfaRequired(crate::application::MfaChallengeIssued {
            challenge: "opaque".into(),
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        }));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "MFA_REQUIRED");
        assert_eq!(info.metadata["challenge"], "opaque");
        assert_eq!(info.metadata["methods"], "totp,recovery_code");
        assert!(!status.message().contains("opaque"), "the challenge travels in the details only");
    }

    #[test]
    fn unverified_email_carries_its_reason() {
        let status = Status::from(ApplicationError::EmailNotVerified);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.get_error_details().error_info().unwrap().reason, "EMAIL_NOT_VERIFIED");
    }
}
