//! Events the domain records in the outbox, in the same transaction as the change
//! that caused them, so that an accepted change always gets its email.

use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Email, UserEvent, UserId};

#[derive(Debug, Clone)]
pub enum DomainEvent {
    VerificationEmailRequested(VerificationEmailRequested),
    PasswordResetRequested(PasswordResetRequested),
    /// A security notice after a password change.
    PasswordChanged(AccountNotice),
    /// A security notice after a password reset (through an emailed link).
    PasswordReset(AccountNotice),
    /// Someone tried to sign up with an address that is already registered
    /// (enumeration-safe mode tells the owner instead of the caller).
    RegistrationAttempted(AccountNotice),
    /// A confirmation link to the address a user asked to move to.
    EmailChangeRequested(EmailChangeRequested),
    /// To the current address: a change to another one was asked for.
    EmailChangePending(AccountNotice),
    /// To the old address: the account moved to another one.
    EmailChanged(AccountNotice),
    /// To an address that is already registered: someone asked to move their
    /// account to it (the asker is told nothing, so nothing is enumerated).
    EmailChangeAttempted(AccountNotice),
    /// A security notice: two-factor login was turned on.
    TwoFactorEnabled(AccountNotice),
    /// A security notice: two-factor login was turned off (by the user or an operator).
    TwoFactorDisabled(AccountNotice),
    /// A security notice: a login from a device never seen for this user.
    NewDeviceSignIn(NewDeviceSignIn),
    /// For other services, not an email (see [`super::user_events`]).
    User(UserEvent),
}

impl DomainEvent {
    pub fn id(&self) -> Uuid {
        match self {
            Self::VerificationEmailRequested(event) => event.event_id,
            Self::PasswordResetRequested(event) => event.event_id,
            Self::EmailChangeRequested(event) => event.event_id,
            Self::NewDeviceSignIn(event) => event.notice.event_id,
            Self::PasswordChanged(event)
            | Self::PasswordReset(event)
            | Self::RegistrationAttempted(event)
            | Self::EmailChangePending(event)
            | Self::EmailChanged(event)
            | Self::EmailChangeAttempted(event)
            | Self::TwoFactorEnabled(event)
            | Self::TwoFactorDisabled(event) => event.event_id,
            Self::User(event) => event.event_id,
        }
    }

    /// The routing key on the message bus.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::VerificationEmailRequested(_) => VerificationEmailRequested::EVENT_TYPE,
            Self::PasswordResetRequested(_) => PasswordResetRequested::EVENT_TYPE,
            Self::PasswordChanged(_) => AccountNotice::PASSWORD_CHANGED,
            Self::PasswordReset(_) => AccountNotice::PASSWORD_RESET,
            Self::RegistrationAttempted(_) => AccountNotice::REGISTRATION_ATTEMPTED,
            Self::EmailChangeRequested(_) => EmailChangeRequested::EVENT_TYPE,
            Self::NewDeviceSignIn(_) => NewDeviceSignIn::EVENT_TYPE,
            Self::EmailChangePending(_) => AccountNotice::EMAIL_CHANGE_PENDING,
            Self::EmailChanged(_) => AccountNotice::EMAIL_CHANGED,
            Self::EmailChangeAttempted(_) => AccountNotice::EMAIL_CHANGE_ATTEMPTED,
            Self::TwoFactorEnabled(_) => AccountNotice::TWO_FACTOR_ENABLED,
            Self::TwoFactorDisabled(_) => AccountNotice::TWO_FACTOR_DISABLED,
            Self::User(event) => event.event_type(),
        }
    }

    pub fn occurred_at(&self) -> OffsetDateTime {
        match self {
            Self::VerificationEmailRequested(event) => event.occurred_at,
            Self::PasswordResetRequested(event) => event.occurred_at,
            Self::EmailChangeRequested(event) => event.occurred_at,
            Self::NewDeviceSignIn(event) => event.notice.occurred_at,
            Self::PasswordChanged(event)
            | Self::PasswordReset(event)
            | Self::RegistrationAttempted(event)
            | Self::EmailChangePending(event)
            | Self::EmailChanged(event)
            | Self::EmailChangeAttempted(event)
            | Self::TwoFactorEnabled(event)
            | Self::TwoFactorDisabled(event) => event.occurred_at,
            Self::User(event) => event.occurred_at,
        }
    }

    /// The user the event is about.
    pub fn user_id(&self) -> UserId {
        match self {
            Self::VerificationEmailRequested(event) => event.user_id,
            Self::PasswordResetRequested(event) => event.user_id,
            Self::EmailChangeRequested(event) => event.user_id,
            Self::NewDeviceSignIn(event) => event.notice.user_id,
            Self::PasswordChanged(event)
            | Self::PasswordReset(event)
            | Self::RegistrationAttempted(event)
            | Self::EmailChangePending(event)
            | Self::EmailChanged(event)
            | Self::EmailChangeAttempted(event)
            | Self::TwoFactorEnabled(event)
            | Self::TwoFactorDisabled(event) => event.user_id,
            Self::User(event) => event.user_id,
        }
    }

    /// Whether the event asks for an email (the others are for other services).
    pub fn is_email(&self) -> bool {
        !matches!(self, Self::User(_))
    }

    /// See [`UserEvent::with_kept_session`]; emails are as they are.
    #[must_use]
    pub fn with_kept_session(self, kept: Option<Uuid>) -> Self {
        match self {
            Self::User(event) => Self::User(event.with_kept_session(kept)),
            other => other,
        }
    }
}

/// The event types that become emails: the mailer binds exactly these.
pub const EMAIL_EVENT_TYPES: &[&str] = &[
    VerificationEmailRequested::EVENT_TYPE,
    PasswordResetRequested::EVENT_TYPE,
    AccountNotice::PASSWORD_CHANGED,
    AccountNotice::PASSWORD_RESET,
    AccountNotice::REGISTRATION_ATTEMPTED,
    EmailChangeRequested::EVENT_TYPE,
    AccountNotice::EMAIL_CHANGE_PENDING,
    AccountNotice::EMAIL_CHANGED,
    AccountNotice::EMAIL_CHANGE_ATTEMPTED,
    AccountNotice::TWO_FACTOR_ENABLED,
    AccountNotice::TWO_FACTOR_DISABLED,
    NewDeviceSignIn::EVENT_TYPE,
];

/// A user asked to reset their password: they must receive a reset link.
#[derive(Debug, Clone)]
pub struct PasswordResetRequested {
    pub event_id: Uuid,
    pub user_id: UserId,
    pub email: Email,
    pub display_name: String,
    /// Carries the single-use token, so it is a secret until it is emailed.
    pub reset_link: SecretString,
    pub expires_at: OffsetDateTime,
    pub occurred_at: OffsetDateTime,
}

impl PasswordResetRequested {
    pub const EVENT_TYPE: &'static str = "user.password_reset_requested";
}

/// Something happened to an account that its owner should hear about.
#[derive(Debug, Clone)]
pub struct AccountNotice {
    pub event_id: Uuid,
    pub user_id: UserId,
    pub email: Email,
    pub display_name: String,
    pub occurred_at: OffsetDateTime,
}

impl AccountNotice {
    pub const PASSWORD_CHANGED: &'static str = "user.password_changed";
    pub const PASSWORD_RESET: &'static str = "user.password_reset_completed";
    pub const REGISTRATION_ATTEMPTED: &'static str = "user.registration_attempted";
    pub const TWO_FACTOR_ENABLED: &'static str = "user.two_factor_enabled";
    pub const TWO_FACTOR_DISABLED: &'static str = "user.two_factor_disabled";
    pub const EMAIL_CHANGE_PENDING: &'static str = "user.email_change_pending";
    pub const EMAIL_CHANGED: &'static str = "user.email_changed";
    pub const EMAIL_CHANGE_ATTEMPTED: &'static str = "user.email_change_attempted";
}

/// Someone logged in to an account from a device (user agent and network)
/// never seen for it before; its owner is told what the device said it was.
#[derive(Debug, Clone)]
pub struct NewDeviceSignIn {
    pub notice: AccountNotice,
    /// As the device (or the calling backend) gave it; `None` when unknown.
    pub user_agent: Option<String>,
    /// The network only (see `ClientContext::coarse_address`), never the exact address.
    pub network: Option<String>,
}

impl NewDeviceSignIn {
    pub const EVENT_TYPE: &'static str = "user.new_device_sign_in";
}

/// A user asked to move their account to `email`: that address must receive
/// the link that confirms it.
#[derive(Debug, Clone)]
pub struct EmailChangeRequested {
    pub event_id: Uuid,
    pub user_id: UserId,
    /// The new address, the only one the link goes to.
    pub email: Email,
    pub display_name: String,
    /// Carries the single-use token, so it is a secret until it is emailed.
    pub confirmation_link: SecretString,
    pub expires_at: OffsetDateTime,
    pub occurred_at: OffsetDateTime,
}

impl EmailChangeRequested {
    pub const EVENT_TYPE: &'static str = "user.email_change_requested";
}

/// A user must receive a link to verify their email address.
#[derive(Debug, Clone)]
pub struct VerificationEmailRequested {
    pub event_id: Uuid,
    pub user_id: UserId,
    /// The stored canonical address: the only one we ever send to.
    pub email: Email,
    /// How to greet the user (display name, first name, or the address's local part).
    pub display_name: String,
    /// Carries the single-use token, so it is a secret until it is emailed.
    pub verification_link: SecretString,
    pub expires_at: OffsetDateTime,
    pub occurred_at: OffsetDateTime,
}

impl VerificationEmailRequested {
    pub const EVENT_TYPE: &'static str = "user.verification_email_requested";
}

impl From<UserEvent> for DomainEvent {
    fn from(event: UserEvent) -> Self {
        Self::User(event)
    }
}
