//! Events for other services (a profile service, billing, search) that keep
//! their own view of users: what changed about a user or their sessions,
//! recorded in the outbox in the same transaction as the change, and published
//! per user in commit order. They carry no secret and no password material,
//! and an address only where the event is about the address.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Email, UserId};

/// One change to a user, for other services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    pub event_id: Uuid,
    pub user_id: UserId,
    /// When the change was made (the use case's clock).
    pub occurred_at: OffsetDateTime,
    pub change: UserChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    SignedUp {
        email: Email,
    },
    EmailVerified {
        email: Email,
    },
    EmailChanged {
        email: Email,
        previous_email: Email,
        is_verified: bool,
    },
    PasswordChanged {
        was_reset: bool,
    },
    Disabled,
    Enabled,
    Deleted,
    /// A login opened a session; `session_id` is its family id, the id
    /// `ListSessions` shows, which refreshes keep.
    SessionCreated {
        session_id: Uuid,
        used_second_factor: bool,
    },
    SessionRevoked {
        ended: EndedSessions,
        reason: RevocationReason,
    },
}

/// Which sessions a revocation ended (by family id, as `SessionCreated` named them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedSessions {
    One(Uuid),
    /// Every session of the user, but the one kept (the caller's login, if it
    /// still lives: only the repository knows, under the user's lock).
    AllBut(Option<Uuid>),
}

/// Why sessions ended; see `SessionRevoked.Reason` in `proto/identity/v1/events.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    Logout,
    RevokedByUser,
    RefreshTokenReused,
    LogoutAll,
    RevokedByAdmin,
    PasswordChanged,
    PasswordReset,
    EmailChanged,
    UserDisabled,
}

/// Every user event type starts with this; no email event type does.
pub const USER_EVENT_TYPE_PREFIX: &str = "identity.v1.";

/// The event types (CloudEvents `type`, and routing keys), in `UserChange` order.
pub const USER_EVENT_TYPES: &[&str] = &[
    "identity.v1.user.signed_up",
    "identity.v1.user.email_verified",
    "identity.v1.user.email_changed",
    "identity.v1.user.password_changed",
    "identity.v1.user.disabled",
    "identity.v1.user.enabled",
    "identity.v1.user.deleted",
    "identity.v1.session.created",
    "identity.v1.session.revoked",
];

impl UserEvent {
    /// A new event about `user_id`, with a fresh id.
    pub fn new(user_id: UserId, occurred_at: OffsetDateTime, change: UserChange) -> Self {
        Self { event_id: Uuid::now_v7(), user_id, occurred_at, change }
    }

    /// `session.created` for a login's new session (its family, which refreshes keep).
    pub fn session_created(
        user_id: UserId,
        session_id: Uuid,
        used_second_factor: bool,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self::new(user_id, occurred_at, UserChange::SessionCreated { session_id, used_second_factor })
    }

    /// `session.revoked`.
    pub fn sessions_revoked(
        user_id: UserId,
        ended: EndedSessions,
        reason: RevocationReason,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self::new(user_id, occurred_at, UserChange::SessionRevoked { ended, reason })
    }

    pub fn event_type(&self) -> &'static str {
        let index = match self.change {
            UserChange::SignedUp { .. } => 0,
            UserChange::EmailVerified { .. } => 1,
            UserChange::EmailChanged { .. } => 2,
            UserChange::PasswordChanged { .. } => 3,
            UserChange::Disabled => 4,
            UserChange::Enabled => 5,
            UserChange::Deleted => 6,
            UserChange::SessionCreated { .. } => 7,
            UserChange::SessionRevoked { .. } => 8,
        };
        USER_EVENT_TYPES[index]
    }

    /// A revocation of every session but the caller's names the login that
    /// was actually kept, as the repository found it under the user's lock
    /// (`None`: it had ended meanwhile, so none was). Other events are as they are.
    #[must_use]
    pub fn with_kept_session(mut self, kept: Option<Uuid>) -> Self {
        if let UserChange::SessionRevoked { ended: EndedSessions::AllBut(slot), .. } = &mut self.change {
            *slot = kept;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event(change: UserChange) -> UserEvent {
        UserEvent::new(UserId::new_v7(), datetime!(2026-01-01 0:00 UTC), change)
    }

    #[test]
    fn every_type_is_distinct_and_prefixed_and_never_an_email_type() {
        let mut seen = std::collections::HashSet::new();
        for kind in USER_EVENT_TYPES {
            assert!(kind.starts_with(USER_EVENT_TYPE_PREFIX), "{kind}");
            assert!(seen.insert(kind), "{kind} twice");
            assert!(!super::super::EMAIL_EVENT_TYPES.contains(kind), "{kind} is an email type");
        }
        for kind in super::super::EMAIL_EVENT_TYPES {
            assert!(!kind.starts_with(USER_EVENT_TYPE_PREFIX), "{kind}");
        }
    }

    #[test]
    fn each_change_has_its_own_type() {
        let email = Email::parse("ada@example.com").unwrap();
        let changes = [
            UserChange::SignedUp { email: email.clone() },
            UserChange::EmailVerified { email: email.clone() },
            UserChange::EmailChanged { email: email.clone(), previous_email: email, is_verified: true },
            UserChange::PasswordChanged { was_reset: false },
            UserChange::Disabled,
            UserChange::Enabled,
            UserChange::Deleted,
            UserChange::SessionCreated { session_id: Uuid::now_v7(), used_second_factor: false },
            UserChange::SessionRevoked { ended: EndedSessions::One(Uuid::now_v7()), reason: RevocationReason::Logout },
        ];
        let types: Vec<_> = changes.into_iter().map(|change| event(change).event_type()).collect();
        assert_eq!(types, USER_EVENT_TYPES);
    }

    #[test]
    fn only_a_revocation_of_all_but_one_takes_the_kept_session() {
        let kept = Uuid::now_v7();
        let all = event(UserChange::SessionRevoked {
            ended: EndedSessions::AllBut(None),
            reason: RevocationReason::PasswordChanged,
        });
        let UserChange::SessionRevoked { ended, .. } = all.with_kept_session(Some(kept)).change else { unreachable!() };
        assert_eq!(ended, EndedSessions::AllBut(Some(kept)));
        let one = event(UserChange::SessionRevoked {
            ended: EndedSessions::One(Uuid::nil()),
            reason: RevocationReason::Logout,
        });
        assert_eq!(one.clone().with_kept_session(Some(kept)), one);
        let disabled = event(UserChange::Disabled);
        assert_eq!(disabled.clone().with_kept_session(Some(kept)), disabled);
    }
}
