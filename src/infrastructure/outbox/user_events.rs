//! The wire form of user events: the protobuf messages of
//! `proto/identity/v1/events.proto`, encoded when the event is written to the
//! outbox (as base64 text, the payload column being text) so that the relay
//! forwards the bytes as they were committed.

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{EndedSessions, RevocationReason, UserChange, UserEvent};

/// The generated message types, for consumers in this repository (the tests,
/// the example) as much as for the encoder.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/events/identity.v1.rs"));
}

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    // Nanoseconds within the second always fit an i32 (below 10⁹).
    prost_types::Timestamp { seconds: at.unix_timestamp(), nanos: i32::try_from(at.nanosecond()).unwrap_or(0) }
}

fn id(uuid: Uuid) -> String {
    uuid.hyphenated().to_string()
}

fn reason(reason: RevocationReason) -> proto::session_revoked::Reason {
    use proto::session_revoked::Reason;
    match reason {
        RevocationReason::Logout => Reason::Logout,
        RevocationReason::RevokedByUser => Reason::RevokedByUser,
        RevocationReason::RefreshTokenReused => Reason::RefreshTokenReused,
        RevocationReason::LogoutAll => Reason::LogoutAll,
        RevocationReason::RevokedByAdmin => Reason::RevokedByAdmin,
        RevocationReason::PasswordChanged => Reason::PasswordChanged,
        RevocationReason::PasswordReset => Reason::PasswordReset,
        RevocationReason::EmailChanged => Reason::EmailChanged,
        RevocationReason::UserDisabled => Reason::UserDisabled,
    }
}

/// The protobuf message the event's type names, encoded.
pub fn encode(event: &UserEvent) -> Vec<u8> {
    let user_id = id(event.user_id.as_uuid());
    let occurred_at = Some(timestamp(event.occurred_at));
    match &event.change {
        UserChange::SignedUp { email } => {
            proto::UserSignedUp { user_id, email: email.as_str().to_owned(), occurred_at }.encode_to_vec()
        }
        UserChange::EmailVerified { email } => {
            proto::UserEmailVerified { user_id, email: email.as_str().to_owned(), occurred_at }.encode_to_vec()
        }
        UserChange::EmailChanged { email, previous_email, is_verified } => proto::UserEmailChanged {
            user_id,
            email: email.as_str().to_owned(),
            previous_email: previous_email.as_str().to_owned(),
            verified: *is_verified,
            occurred_at,
        }
        .encode_to_vec(),
        UserChange::PasswordChanged { was_reset } => {
            proto::UserPasswordChanged { user_id, was_reset: *was_reset, occurred_at }.encode_to_vec()
        }
        UserChange::Disabled => proto::UserDisabled { user_id, occurred_at }.encode_to_vec(),
        UserChange::Enabled => proto::UserEnabled { user_id, occurred_at }.encode_to_vec(),
        UserChange::Deleted => proto::UserDeleted { user_id, occurred_at }.encode_to_vec(),
        UserChange::SessionCreated { session_id, used_second_factor } => proto::SessionCreated {
            user_id,
            session_id: id(*session_id),
            used_second_factor: *used_second_factor,
            occurred_at,
        }
        .encode_to_vec(),
        UserChange::SessionRevoked { ended, reason: why } => {
            let (session_id, all_sessions, kept_session_id) = match ended {
                EndedSessions::One(session) => (id(*session), false, String::new()),
                EndedSessions::AllBut(kept) => (String::new(), true, kept.map(id).unwrap_or_default()),
            };
            proto::SessionRevoked {
                user_id,
                session_id,
                all_sessions,
                kept_session_id,
                reason: reason(*why).into(),
                occurred_at,
            }
            .encode_to_vec()
        }
    }
}

/// How an encoded event is kept in the outbox's text column.
pub fn to_payload(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The bytes a stored payload holds.
///
/// # Errors
/// A payload that is not base64 (written by hand, or damaged): permanent.
pub fn from_payload(payload: &str) -> anyhow::Result<Vec<u8>> {
    STANDARD.decode(payload.trim()).context("the user event's payload is not base64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, UserId};
    use time::macros::datetime;

    #[test]
    fn an_email_change_round_trips_through_the_stored_payload() {
        let user_id = UserId::new_v7();
        let event = UserEvent::new(
            user_id,
            datetime!(2026-03-04 5:06:07.123456789 UTC),
            UserChange::EmailChanged {
                email: Email::parse("new@example.com").unwrap(),
                previous_email: Email::parse("old@example.com").unwrap(),
                is_verified: false,
            },
        );
        let stored = to_payload(&encode(&event));
        let decoded = proto::UserEmailChanged::decode(from_payload(&stored).unwrap().as_slice()).unwrap();
        assert_eq!(decoded.user_id, user_id.as_uuid().to_string());
        assert_eq!((decoded.email.as_str(), decoded.previous_email.as_str()), ("new@example.com", "old@example.com"));
        assert!(!decoded.verified);
        let at = decoded.occurred_at.unwrap();
        assert_eq!((at.seconds, at.nanos), (datetime!(2026-03-04 5:06:07 UTC).unix_timestamp(), 123_456_789));
    }

    #[test]
    fn a_revocation_of_all_but_one_names_the_kept_session_and_no_single_one() {
        let kept = Uuid::now_v7();
        let event = UserEvent::sessions_revoked(
            UserId::new_v7(),
            EndedSessions::AllBut(Some(kept)),
            RevocationReason::PasswordChanged,
            datetime!(2026-01-01 0:00 UTC),
        );
        let decoded = proto::SessionRevoked::decode(encode(&event).as_slice()).unwrap();
        assert!(decoded.all_sessions);
        assert_eq!(decoded.kept_session_id, kept.to_string());
        assert_eq!(decoded.session_id, "");
        assert_eq!(decoded.reason(), proto::session_revoked::Reason::PasswordChanged);
    }

    #[test]
    fn a_password_change_carries_nothing_but_the_user_the_kind_and_the_time() {
        let event = UserEvent::new(
            UserId::new_v7(),
            datetime!(2026-01-01 0:00 UTC),
            UserChange::PasswordChanged { was_reset: true },
        );
        let bytes = encode(&event);
        let decoded = proto::UserPasswordChanged::decode(bytes.as_slice()).unwrap();
        assert!(decoded.was_reset);
        // user id (36 + 2), the flag (2), the timestamp (seconds only: 2 + 6).
        assert!(bytes.len() <= 50, "{} bytes", bytes.len());
    }
}
