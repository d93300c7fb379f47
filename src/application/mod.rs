//! The use cases: one type per operation, each with an `execute` taking domain
//! types. They orchestrate the domain and the ports; they know nothing of gRPC.

mod access_guard;
pub mod admin;
pub mod deliver_email;
pub mod email_change;
pub mod email_checks;
pub mod email_rendering;
mod error;
#[cfg(test)]
mod fakes;
pub mod get_current_user;
pub mod handle_email_event;
pub mod import_django;
pub mod login;
pub mod mfa;
pub mod password_rules;
pub mod passwords;
pub mod prune;
pub mod rate_limiter;
pub mod resend_verification_email;
mod session_issuer;
pub mod sessions;
pub mod sign_up;
pub mod validate_token;
pub mod verify_email;

pub use access_guard::AccessGuard;
pub use admin::{AdminUsers, ListUsersInput};
pub use deliver_email::DeliverEmail;
pub use email_change::{ConfirmEmailChange, RequestEmailChange};
pub use email_checks::ExpectedEmails;
pub use error::{ApplicationError, FieldViolation, MfaChallengeIssued, MfaRefusal};
pub use get_current_user::GetCurrentUser;
pub use handle_email_event::{Disposition, HandleEmailEvent, RetryPolicy};
pub use import_django::{ImportDjangoUsers, ImportObserver, ImportOptions, ImportSummary, SkipReason, SkippedRow};
pub use login::{Login, LoginCommand, LoginOutcome};
pub use mfa::{
    BeginTotpEnrollment, CompleteMfaLogin, ConfirmTotpEnrollment, DisableTotp, RegenerateRecoveryCodes, SecondFactors,
    TotpEnrollmentStarted,
};
pub use password_rules::PasswordRules;
pub use passwords::{ChangePassword, RequestPasswordReset, ResetPassword};
pub use prune::PruneStaleRecords;
pub use rate_limiter::RateLimiter;
pub use resend_verification_email::ResendVerificationEmail;
pub use session_issuer::{SessionIssuer, SessionTokens};
pub use sessions::{ListSessions, ListedSession, Logout, LogoutAll, RefreshSession, RevokeSession};
pub use sign_up::{LinkTemplate, SignUp, SignUpCommand, SignUpInput};
pub use validate_token::ValidateToken;
pub use verify_email::VerifyEmail;

/// Which security notices are emailed (`IDENTITY_NOTIFY_*`). The emails a
/// change cannot work without (links) are not switchable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notices {
    /// After a password change or reset.
    pub password_changed: bool,
    /// To the old address, when a change to another is asked for and when it is made.
    pub email_changed: bool,
    /// After a sign-in from a device not seen before.
    pub new_device: bool,
}

impl Default for Notices {
    fn default() -> Self {
        Self { password_changed: true, email_changed: true, new_device: false }
    }
}
