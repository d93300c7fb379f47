//! The wire form of domain events: versioned JSON for emails, the same in the
//! outbox table and on the message bus, so that the relay forwards rows without
//! re-encoding; user events are protobuf ([`super::user_events`]).

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{
    AccountNotice, DomainEvent, Email, EmailChangeRequested, NewDeviceSignIn, PasswordResetRequested, UserId,
    VerificationEmailRequested,
};

/// Bumped when a field changes meaning or disappears; consumers refuse versions
/// they do not know instead of guessing.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct VerificationEmailRequestedV1 {
    schema_version: u32,
    event_id: Uuid,
    user_id: Uuid,
    email: String,
    display_name: String,
    verification_link: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct PasswordResetRequestedV1 {
    schema_version: u32,
    event_id: Uuid,
    user_id: Uuid,
    email: String,
    display_name: String,
    reset_link: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct EmailChangeRequestedV1 {
    schema_version: u32,
    event_id: Uuid,
    user_id: Uuid,
    email: String,
    display_name: String,
    confirmation_link: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct AccountNoticeV1 {
    schema_version: u32,
    event_id: Uuid,
    user_id: Uuid,
    email: String,
    display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct NewDeviceSignInV1 {
    #[serde(flatten)]
    notice: AccountNoticeV1,
    user_agent: Option<String>,
    network: Option<String>,
}

fn notice_v1(e: &AccountNotice) -> AccountNoticeV1 {
    AccountNoticeV1 {
        schema_version: SCHEMA_VERSION,
        event_id: e.event_id,
        user_id: e.user_id.as_uuid(),
        email: e.email.as_str().to_owned(),
        display_name: e.display_name.clone(),
        occurred_at: e.occurred_at,
    }
}

fn notice_from(p: AccountNoticeV1) -> anyhow::Result<AccountNotice> {
    Ok(AccountNotice {
        event_id: p.event_id,
        user_id: UserId::from_uuid(p.user_id),
        email: Email::hydrate(p.email).context("the event's email is not canonical")?,
        display_name: p.display_name,
        occurred_at: p.occurred_at,
    })
}

#[derive(Deserialize)]
struct VersionProbe {
    schema_version: u32,
}

/// # Errors
/// Serialisation cannot fail for these types; the signature keeps it honest.
pub fn encode(event: &DomainEvent) -> anyhow::Result<String> {
    match event {
        DomainEvent::VerificationEmailRequested(e) => Ok(serde_json::to_string(&VerificationEmailRequestedV1 {
            schema_version: SCHEMA_VERSION,
            event_id: e.event_id,
            user_id: e.user_id.as_uuid(),
            email: e.email.as_str().to_owned(),
            display_name: e.display_name.clone(),
            verification_link: e.verification_link.expose_secret().to_owned(),
            expires_at: e.expires_at,
            occurred_at: e.occurred_at,
        })?),
        DomainEvent::PasswordResetRequested(e) => Ok(serde_json::to_string(&PasswordResetRequestedV1 {
            schema_version: SCHEMA_VERSION,
            event_id: e.event_id,
            user_id: e.user_id.as_uuid(),
            email: e.email.as_str().to_owned(),
            display_name: e.display_name.clone(),
            reset_link: e.reset_link.expose_secret().to_owned(),
            expires_at: e.expires_at,
            occurred_at: e.occurred_at,
        })?),
        DomainEvent::EmailChangeRequested(e) => Ok(serde_json::to_string(&EmailChangeRequestedV1 {
            schema_version: SCHEMA_VERSION,
            event_id: e.event_id,
            user_id: e.user_id.as_uuid(),
            email: e.email.as_str().to_owned(),
            display_name: e.display_name.clone(),
            confirmation_link: e.confirmation_link.expose_secret().to_owned(),
            expires_at: e.expires_at,
            occurred_at: e.occurred_at,
        })?),
        DomainEvent::PasswordChanged(e)
        | DomainEvent::PasswordReset(e)
        | DomainEvent::RegistrationAttempted(e)
        | DomainEvent::EmailChangePending(e)
        | DomainEvent::EmailChanged(e)
        | DomainEvent::EmailChangeAttempted(e)
        | DomainEvent::TwoFactorEnabled(e)
        | DomainEvent::TwoFactorDisabled(e) => Ok(serde_json::to_string(&notice_v1(e))?),
        DomainEvent::NewDeviceSignIn(e) => Ok(serde_json::to_string(&NewDeviceSignInV1 {
            notice: notice_v1(&e.notice),
            user_agent: e.user_agent.clone(),
            network: e.network.clone(),
        })?),
        DomainEvent::User(e) => Ok(super::user_events::to_payload(&super::user_events::encode(e))),
    }
}

/// Reads an email event back (user events are for other services: never
/// decoded here).
///
/// # Errors
/// Unknown type or version, or a payload that does not match its schema. These
/// are permanent: retrying cannot fix them.
pub fn decode(event_type: &str, payload: &[u8]) -> anyhow::Result<DomainEvent> {
    let probe: VersionProbe = serde_json::from_slice(payload).context("the payload is not a versioned JSON event")?;
    anyhow::ensure!(probe.schema_version == SCHEMA_VERSION, "unsupported schema version {}", probe.schema_version);
    match event_type {
        VerificationEmailRequested::EVENT_TYPE => {
            let p: VerificationEmailRequestedV1 = serde_json::from_slice(payload).context("malformed event payload")?;
            Ok(DomainEvent::VerificationEmailRequested(VerificationEmailRequested {
                event_id: p.event_id,
                user_id: UserId::from_uuid(p.user_id),
                email: Email::hydrate(p.email).context("the event's email is not canonical")?,
                display_name: p.display_name,
                verification_link: SecretString::from(p.verification_link),
                expires_at: p.expires_at,
                occurred_at: p.occurred_at,
            }))
        }
        PasswordResetRequested::EVENT_TYPE => {
            let p: PasswordResetRequestedV1 = serde_json::from_slice(payload).context("malformed event payload")?;
            Ok(DomainEvent::PasswordResetRequested(PasswordResetRequested {
                event_id: p.event_id,
                user_id: UserId::from_uuid(p.user_id),
                email: Email::hydrate(p.email).context("the event's email is not canonical")?,
                display_name: p.display_name,
                reset_link: SecretString::from(p.reset_link),
                expires_at: p.expires_at,
                occurred_at: p.occurred_at,
            }))
        }
        AccountNotice::PASSWORD_CHANGED => Ok(DomainEvent::PasswordChanged(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        AccountNotice::PASSWORD_RESET => Ok(DomainEvent::PasswordReset(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        AccountNotice::REGISTRATION_ATTEMPTED => Ok(DomainEvent::RegistrationAttempted(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        AccountNotice::EMAIL_CHANGE_PENDING => Ok(DomainEvent::EmailChangePending(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        AccountNotice::EMAIL_CHANGED => Ok(DomainEvent::EmailChanged(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        AccountNotice::EMAIL_CHANGE_ATTEMPTED => Ok(DomainEvent::EmailChangeAttempted(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        EmailChangeRequested::EVENT_TYPE => {
            let p: EmailChangeRequestedV1 = serde_json::from_slice(payload).context("malformed event payload")?;
            Ok(DomainEvent::EmailChangeRequested(EmailChangeRequested {
                event_id: p.event_id,
                user_id: UserId::from_uuid(p.user_id),
                email: Email::hydrate(p.email).context("the event's email is not canonical")?,
                display_name: p.display_name,
                confirmation_link: SecretString::from(p.confirmation_link),
                expires_at: p.expires_at,
                occurred_at: p.occurred_at,
            }))
        }
        AccountNotice::TWO_FACTOR_ENABLED => Ok(DomainEvent::TwoFactorEnabled(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        AccountNotice::TWO_FACTOR_DISABLED => Ok(DomainEvent::TwoFactorDisabled(notice_from(
            serde_json::from_slice(payload).context("malformed event payload")?,
        )?)),
        NewDeviceSignIn::EVENT_TYPE => {
            let p: NewDeviceSignInV1 = serde_json::from_slice(payload).context("malformed event payload")?;
            Ok(DomainEvent::NewDeviceSignIn(NewDeviceSignIn {
                notice: notice_from(p.notice)?,
                user_agent: p.user_agent,
                network: p.network,
            }))
        }
        other => anyhow::bail!("unknown event type {other:?}"),
    }
}

/// The payload fields that carry a single-use link (and so its token).
pub const LINK_FIELDS: &[&str] = &["verification_link", "reset_link", "confirmation_link"];

/// The payload of a row of `event_type` as it may stay at rest once published:
/// user events carry no link by construction and stay as they are; emails go
/// through [`redact`].
pub fn at_rest(event_type: &str, payload: &str) -> String {
    if event_type.starts_with(crate::domain::user_events::USER_EVENT_TYPE_PREFIX) {
        payload.to_owned()
    } else {
        redact(payload)
    }
}

/// The payload as it may stay at rest once published: without the single-use
/// link, which a database read (a backup, a replica) would otherwise turn into an
/// account takeover. A payload that is not a JSON object (it was settled as
/// undecodable) may hold anything, so nothing of it is kept.
pub fn redact(payload: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(mut fields)) => {
            let mut removed = false;
            for field in LINK_FIELDS {
                removed |= fields.remove(*field).is_some();
            }
            if !removed {
                return payload.to_owned();
            }
            fields.insert("redacted".to_owned(), serde_json::Value::from(LINK_FIELDS.join(",")));
            serde_json::Value::Object(fields).to_string()
        }
        _ => r#"{"redacted":"the payload was not a JSON object"}"#.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn redacting_drops_every_link_and_keeps_the_rest() {
        let link = "https://x.example/v?token=secret-token-value";
        let events = [
            DomainEvent::VerificationEmailRequested(VerificationEmailRequested {
                event_id: Uuid::now_v7(),
                user_id: UserId::new_v7(),
                email: Email::parse("ada@example.com").unwrap(),
                display_name: "Ada".into(),
                verification_link: SecretString::from(link),
                expires_at: datetime!(2026-01-02 0:00 UTC),
                occurred_at: datetime!(2026-01-01 0:00 UTC),
            }),
            DomainEvent::PasswordResetRequested(PasswordResetRequested {
                event_id: Uuid::now_v7(),
                user_id: UserId::new_v7(),
                email: Email::parse("ada@example.com").unwrap(),
                display_name: "Ada".into(),
                reset_link: SecretString::from(link),
                expires_at: datetime!(2026-01-02 0:00 UTC),
                occurred_at: datetime!(2026-01-01 0:00 UTC),
            }),
        ];
        for event in events {
            let stored = encode(&event).unwrap();
            assert!(stored.contains("secret-token-value"));
            let redacted = redact(&stored);
            assert!(!redacted.contains("secret-token-value"), "{redacted}");
            assert!(redacted.contains(&event.id().to_string()), "{redacted}");
        }
        assert!(!redact("not json token=secret-token-value").contains("secret-token-value"));
        let notice = r#"{"schema_version":1,"email":"ada@example.com"}"#;
        assert_eq!(redact(notice), notice, "payloads without a link stay as they are");
    }

    #[test]
    fn events_round_trip() {
        let event = DomainEvent::VerificationEmailRequested(VerificationEmailRequested {
            event_id: Uuid::now_v7(),
            user_id: UserId::new_v7(),
            email: Email::parse("ada@example.com").unwrap(),
            display_name: "Ada".into(),
            verification_link: SecretString::from("https://x.example/v?token=t"),
            expires_at: datetime!(2026-01-02 0:00 UTC),
            occurred_at: datetime!(2026-01-01 0:00 UTC),
        });
        let json = encode(&event).unwrap();
        let DomainEvent::VerificationEmailRequested(back) = decode(event.event_type(), json.as_bytes()).unwrap() else {
            panic!("wrong event type decoded");
        };
        assert_eq!(back.event_id, event.id());
        assert_eq!(back.verification_link.expose_secret(), "https://x.example/v?token=t");
    }

    #[test]
    fn a_new_device_notice_round_trips_with_its_device() {
        let event = DomainEvent::NewDeviceSignIn(NewDeviceSignIn {
            notice: AccountNotice {
                event_id: Uuid::now_v7(),
                user_id: UserId::new_v7(),
                email: Email::parse("ada@example.com").unwrap(),
                display_name: "Ada".into(),
                occurred_at: datetime!(2026-01-01 0:00 UTC),
            },
            user_agent: Some("Firefox/133.0 (phone)".into()),
            network: Some("203.0.113.0/24".into()),
        });
        let json = encode(&event).unwrap();
        let DomainEvent::NewDeviceSignIn(back) = decode(event.event_type(), json.as_bytes()).unwrap() else {
            panic!("wrong event type decoded");
        };
        assert_eq!(back.notice.event_id, event.id());
        assert_eq!(back.user_agent.as_deref(), Some("Firefox/133.0 (phone)"));
        assert_eq!(back.network.as_deref(), Some("203.0.113.0/24"));
    }

    #[test]
    fn unknown_versions_and_types_are_refused() {
        assert!(decode("user.verification_email_requested", br#"{"schema_version": 2}"#).is_err());
        assert!(decode("user.other", br#"{"schema_version": 1}"#).is_err());
        assert!(decode("user.verification_email_requested", b"not json").is_err());
    }
}
