//! The `User` entity and its status transitions.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Email, PersonName};

/// A user's id: a UUID (v7, so ids sort by creation time and index well).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// # Errors
    /// The input is not a UUID.
    pub fn parse(raw: &str) -> Result<Self, uuid::Error> {
        Uuid::try_parse(raw).map(Self)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0.hyphenated())
    }
}

/// Where an account stands. Only these transitions exist:
/// `PendingVerification → Active` (email verified), `Active ⇄ Disabled` (operator).
/// A disabled account is never re-activated by an email link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    PendingVerification,
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingVerification => "pending_verification",
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// # Errors
    /// An unknown stored value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "pending_verification" => Ok(Self::PendingVerification),
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!("unknown user status {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    id: UserId,
    email: Email,
    display_name: Option<PersonName>,
    first_name: Option<PersonName>,
    last_name: Option<PersonName>,
    status: UserStatus,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    verified_at: Option<OffsetDateTime>,
    /// Access tokens issued before this instant are no longer accepted.
    tokens_valid_after: Option<OffsetDateTime>,
    /// The key the user had in the system they were imported from, when it
    /// could not become their id (Django's integer keys). Boxed: a `String`
    /// would grow every user by a word, for the few imported ones.
    legacy_id: Option<Box<str>>,
}

/// When the user's timestamps stand, as read back from storage.
#[derive(Debug, Clone, Copy)]
pub struct UserTimestamps {
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub verified_at: Option<OffsetDateTime>,
    pub tokens_valid_after: Option<OffsetDateTime>,
}

/// The optional names a user may give.
#[derive(Debug, Clone, Default)]
pub struct PersonNames {
    pub display_name: Option<PersonName>,
    pub first_name: Option<PersonName>,
    pub last_name: Option<PersonName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyEmailError {
    #[error("the email address is already verified")]
    AlreadyVerified,
    #[error("the account is disabled")]
    Disabled,
}

/// Why a user whose password was right still may not log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefusal {
    #[error("the email address is not verified")]
    EmailNotVerified,
    #[error("the account is disabled")]
    Disabled,
}

impl User {
    /// A new sign-up: pending verification until the emailed link is used.
    pub fn sign_up(id: UserId, email: Email, names: PersonNames, now: OffsetDateTime) -> Self {
        Self {
            id,
            email,
            display_name: names.display_name,
            first_name: names.first_name,
            last_name: names.last_name,
            status: UserStatus::PendingVerification,
            created_at: now,
            updated_at: now,
            verified_at: None,
            tokens_valid_after: None,
            legacy_id: None,
        }
    }

    /// Rebuilds a user read back from storage.
    pub fn hydrate(id: UserId, email: Email, names: PersonNames, status: UserStatus, at: UserTimestamps) -> Self {
        Self {
            id,
            email,
            display_name: names.display_name,
            first_name: names.first_name,
            last_name: names.last_name,
            status,
            created_at: at.created_at,
            updated_at: at.updated_at,
            verified_at: at.verified_at,
            tokens_valid_after: at.tokens_valid_after,
            legacy_id: None,
        }
    }

    /// The user with the key they had in the system they were imported from.
    #[must_use]
    pub fn with_legacy_id(mut self, legacy_id: Option<String>) -> Self {
        self.legacy_id = legacy_id.map(String::into_boxed_str);
        self
    }

    /// Disables the account: it can no longer log in, and every access token
    /// issued so far stops being accepted.
    ///
    /// # Errors
    /// Already disabled.
    pub fn disable(&mut self, now: OffsetDateTime) -> Result<(), AccountStateError> {
        if self.status == UserStatus::Disabled {
            return Err(AccountStateError::AlreadyDisabled);
        }
        self.status = UserStatus::Disabled;
        self.revoke_tokens(now);
        Ok(())
    }

    /// Re-enables a disabled account, back to where it was: active if the email
    /// was verified, pending verification otherwise.
    ///
    /// # Errors
    /// Not disabled.
    pub fn enable(&mut self, now: OffsetDateTime) -> Result<(), AccountStateError> {
        if self.status != UserStatus::Disabled {
            return Err(AccountStateError::NotDisabled);
        }
        self.status = if self.verified_at.is_some() { UserStatus::Active } else { UserStatus::PendingVerification };
        self.touch(now);
        Ok(())
    }

    /// Refuses every access token issued before `now` (log out everywhere,
    /// password reset). The cutoff only ever moves forward: a change computed
    /// from an older clock reading never revives tokens a later one refused.
    pub fn revoke_tokens(&mut self, now: OffsetDateTime) {
        self.tokens_valid_after = Some(self.tokens_valid_after.map_or(now, |after| after.max(now)));
        self.touch(now);
    }

    /// Records a change to the account made now (never moving the time back).
    pub fn touch(&mut self, now: OffsetDateTime) {
        self.updated_at = self.updated_at.max(now);
    }

    /// Whether an access token issued at `issued_at` is still honoured.
    pub fn accepts_tokens_issued_at(&self, issued_at: OffsetDateTime) -> bool {
        self.status != UserStatus::Disabled && self.tokens_valid_after.is_none_or(|after| issued_at >= after)
    }

    /// Marks the email verified and the account active.
    ///
    /// # Errors
    /// Already verified, or disabled: a verification link must never undo an
    /// operator's decision (the seed's link re-activated deactivated accounts).
    pub fn verify_email(&mut self, now: OffsetDateTime) -> Result<(), VerifyEmailError> {
        match self.status {
            UserStatus::PendingVerification => {
                self.status = UserStatus::Active;
                self.verified_at = Some(now);
                self.touch(now);
                Ok(())
            }
            UserStatus::Active => Err(VerifyEmailError::AlreadyVerified),
            UserStatus::Disabled => Err(VerifyEmailError::Disabled),
        }
    }

    /// Moves the account to another address. A verified one (confirmed through
    /// the link sent to it, or on an operator's word) keeps or makes the account
    /// active; an unverified one puts an active account back to pending
    /// verification. A disabled account stays disabled either way.
    pub fn change_email(&mut self, email: Email, is_verified: bool, now: OffsetDateTime) {
        self.email = email;
        if is_verified {
            self.verified_at = Some(self.verified_at.map_or(now, |at| at.max(now)));
            if self.status == UserStatus::PendingVerification {
                self.status = UserStatus::Active;
            }
        } else {
            self.verified_at = None;
            if self.status == UserStatus::Active {
                self.status = UserStatus::PendingVerification;
            }
        }
        self.touch(now);
    }

    /// Whether a user who proved their password may have a session.
    ///
    /// # Errors
    /// The reason they may not.
    pub fn ensure_can_log_in(&self) -> Result<(), LoginRefusal> {
        match self.status {
            UserStatus::Active => Ok(()),
            UserStatus::PendingVerification => Err(LoginRefusal::EmailNotVerified),
            UserStatus::Disabled => Err(LoginRefusal::Disabled),
        }
    }

    pub fn is_pending_verification(&self) -> bool {
        self.status == UserStatus::PendingVerification
    }

    /// The name to greet the user with in emails. Until the address is verified,
    /// the names are whatever the caller typed at sign-up, and the caller may not
    /// own the address: greeting with them would let anyone send their own text
    /// through our sender to any address. So an unverified user is greeted by
    /// the local part of the address the email goes to.
    pub fn greeting_name(&self) -> String {
        let chosen =
            if self.verified_at.is_some() { self.display_name.as_ref().or(self.first_name.as_ref()) } else { None };
        chosen.map_or_else(|| self.email.local_part().to_owned(), |name| name.as_str().to_owned())
    }

    pub fn id(&self) -> UserId {
        self.id
    }
    pub fn email(&self) -> &Email {
        &self.email
    }
    pub fn display_name(&self) -> Option<&PersonName> {
        self.display_name.as_ref()
    }
    pub fn first_name(&self) -> Option<&PersonName> {
        self.first_name.as_ref()
    }
    pub fn last_name(&self) -> Option<&PersonName> {
        self.last_name.as_ref()
    }
    pub fn status(&self) -> UserStatus {
        self.status
    }
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }
    pub fn verified_at(&self) -> Option<OffsetDateTime> {
        self.verified_at
    }
    pub fn tokens_valid_after(&self) -> Option<OffsetDateTime> {
        self.tokens_valid_after
    }
    pub fn legacy_id(&self) -> Option<&str> {
        self.legacy_id.as_deref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountStateError {
    #[error("the account is already disabled")]
    AlreadyDisabled,
    #[error("the account is not disabled")]
    NotDisabled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn pending_user() -> User {
        let email = Email::parse("ada@example.com").unwrap();
        User::sign_up(UserId::new_v7(), email, PersonNames::default(), datetime!(2026-01-01 0:00 UTC))
    }

    #[test]
    fn a_new_user_waits_for_verification_and_cannot_log_in() {
        let user = pending_user();
        assert_eq!(user.status(), UserStatus::PendingVerification);
        assert_eq!(user.ensure_can_log_in(), Err(LoginRefusal::EmailNotVerified));
    }

    #[test]
    fn verifying_activates_once() {
        let mut user = pending_user();
        let now = datetime!(2026-01-02 0:00 UTC);
        user.verify_email(now).unwrap();
        assert_eq!(user.status(), UserStatus::Active);
        assert_eq!(user.verified_at(), Some(now));
        assert_eq!(user.ensure_can_log_in(), Ok(()));
        assert_eq!(user.verify_email(now), Err(VerifyEmailError::AlreadyVerified));
    }

    #[test]
    fn a_confirmed_new_address_keeps_the_account_active_and_an_unconfirmed_one_needs_verifying() {
        let mut user = pending_user();
        let now = datetime!(2026-01-02 0:00 UTC);
        user.verify_email(now).unwrap();
        let later = datetime!(2026-01-03 0:00 UTC);
        user.change_email(Email::parse("grace@example.com").unwrap(), true, later);
        assert_eq!(
            (user.email().as_str(), user.status(), user.verified_at()),
            ("grace@example.com", UserStatus::Active, Some(later))
        );
        user.change_email(Email::parse("ada@example.com").unwrap(), false, later);
        assert_eq!((user.status(), user.verified_at()), (UserStatus::PendingVerification, None));
        user.disable(later).unwrap();
        user.change_email(Email::parse("grace@example.com").unwrap(), true, later);
        assert_eq!(user.status(), UserStatus::Disabled, "a new address never undoes a disable");
    }

    #[test]
    fn a_disabled_user_is_never_reactivated_by_verification() {
        let mut user = pending_user();
        user.status = UserStatus::Disabled;
        assert_eq!(user.verify_email(datetime!(2026-01-02 0:00 UTC)), Err(VerifyEmailError::Disabled));
        assert_eq!(user.status(), UserStatus::Disabled);
    }

    #[test]
    fn greeting_falls_back_from_display_name_to_first_name_to_email() {
        let mut user = pending_user();
        user.verify_email(datetime!(2026-01-02 0:00 UTC)).unwrap();
        assert_eq!(user.greeting_name(), "ada");
        user.first_name = PersonName::parse_optional("Ada").unwrap();
        assert_eq!(user.greeting_name(), "Ada");
        user.display_name = PersonName::parse_optional("Countess").unwrap();
        assert_eq!(user.greeting_name(), "Countess");
    }

    #[test]
    fn an_unverified_user_is_greeted_by_the_address_not_by_the_names_given_at_sign_up() {
        let names = PersonNames {
            display_name: PersonName::parse_optional("Win a prize at evil.example").unwrap(),
            first_name: PersonName::parse_optional("Claim it now").unwrap(),
            last_name: None,
        };
        let email = Email::parse("victim@example.com").unwrap();
        let mut user = User::sign_up(UserId::new_v7(), email, names, datetime!(2026-01-01 0:00 UTC));
        assert_eq!(user.greeting_name(), "victim");
        // Disabled before verifying: still nobody proved the names are the owner's.
        user.disable(datetime!(2026-01-02 0:00 UTC)).unwrap();
        assert_eq!(user.greeting_name(), "victim");
        user.enable(datetime!(2026-01-03 0:00 UTC)).unwrap();
        user.verify_email(datetime!(2026-01-04 0:00 UTC)).unwrap();
        assert_eq!(user.greeting_name(), "Win a prize at evil.example");
    }

    #[test]
    fn disabling_refuses_earlier_tokens_and_enabling_restores_the_previous_status() {
        let mut user = pending_user();
        user.verify_email(datetime!(2026-01-02 0:00 UTC)).unwrap();
        let disabled_at = datetime!(2026-01-03 0:00 UTC);
        user.disable(disabled_at).unwrap();
        assert_eq!(user.ensure_can_log_in(), Err(LoginRefusal::Disabled));
        assert!(!user.accepts_tokens_issued_at(disabled_at));
        assert_eq!(user.disable(disabled_at), Err(AccountStateError::AlreadyDisabled));
        user.enable(datetime!(2026-01-04 0:00 UTC)).unwrap();
        assert_eq!(user.status(), UserStatus::Active);
        assert!(!user.accepts_tokens_issued_at(datetime!(2026-01-02 12:00 UTC)));
        assert!(user.accepts_tokens_issued_at(datetime!(2026-01-04 0:00 UTC)));
    }

    #[test]
    fn enabling_an_unverified_user_returns_them_to_pending() {
        let mut user = pending_user();
        user.disable(datetime!(2026-01-03 0:00 UTC)).unwrap();
        user.enable(datetime!(2026-01-04 0:00 UTC)).unwrap();
        assert_eq!(user.status(), UserStatus::PendingVerification);
        assert_eq!(user.enable(datetime!(2026-01-04 0:00 UTC)), Err(AccountStateError::NotDisabled));
    }

    #[test]
    fn the_token_cutoff_and_the_update_time_never_move_back() {
        let mut user = pending_user();
        let later = datetime!(2026-01-05 0:00 UTC);
        user.revoke_tokens(later);
        user.revoke_tokens(datetime!(2026-01-04 0:00 UTC));
        assert_eq!(user.tokens_valid_after(), Some(later));
        assert_eq!(user.updated_at(), later);
        user.disable(datetime!(2026-01-03 0:00 UTC)).unwrap();
        assert_eq!(user.tokens_valid_after(), Some(later));
    }

    #[test]
    fn status_round_trips_through_its_stored_form() {
        for status in [UserStatus::PendingVerification, UserStatus::Active, UserStatus::Disabled] {
            assert_eq!(UserStatus::parse(status.as_str()), Ok(status));
        }
    }
}
