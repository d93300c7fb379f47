use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccessGuard, ApplicationError, LinkTemplate, Notices, email_change::notice_to, sign_up::new_verification};
use crate::domain::{
    DomainEvent, Email, EndedSessions, RevocationReason, User, UserChange, UserEvent, UserId, UserStatus,
    ports::{
        AccountRepository, Clock, EmailChangeRefused, LiveSession, MfaRepository, NewSingleUseToken, SessionRepository,
        UserListQuery, UserRepository,
    },
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
/// Reads an address change is built from before it gives up (see `set_email`).
const MAX_ATTEMPTS: u32 = 3;

/// One page request of `ListUsers`, as received.
#[derive(Debug, Clone, Default)]
pub struct ListUsersInput {
    pub page_size: u32,
    pub page_token: String,
    pub status: Option<UserStatus>,
    pub email_prefix: String,
}

/// The cursor inside a page token: where the last page ended, and the filters
/// it was made for (a token is only valid with the same filters).
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    after: Uuid,
    status: Option<String>,
    prefix: Option<String>,
}

/// Operator and service actions on users. Every action is written to the audit
/// log (target `identity::audit`) with the acting API key's id.
pub struct AdminUsers {
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub mfa: Arc<dyn MfaRepository>,
    pub guard: Arc<AccessGuard>,
    pub clock: Arc<dyn Clock>,
    /// For the verification email after an address set unverified.
    pub verification_links: LinkTemplate,
    pub verification_ttl: Duration,
    pub notices: Notices,
}

fn audit(actor: &str, action: &str, user_id: UserId) {
    tracing::info!(target: "identity::audit", actor, action, user_id = %user_id, "admin action");
}

impl AdminUsers {
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn get(&self, actor: &str, id: UserId) -> Result<User, ApplicationError> {
        let user = self.users.find_by_id(id).await?.ok_or(ApplicationError::NotFound)?;
        audit(actor, "get_user", id);
        Ok(user)
    }

    /// The user imported from Django with this key (`legacy_id`).
    ///
    /// # Errors
    /// `NotFound` (also for a key longer than any stored); storage failures.
    pub async fn get_by_legacy_id(&self, actor: &str, legacy_id: &str) -> Result<User, ApplicationError> {
        if legacy_id.len() > super::import_django::MAX_LEGACY_ID_LENGTH {
            return Err(ApplicationError::NotFound);
        }
        let user = self.users.find_by_legacy_id(legacy_id).await?.ok_or(ApplicationError::NotFound)?;
        audit(actor, "get_user", user.id());
        Ok(user)
    }

    /// Keyset pagination in id order (ids are UUIDv7, so creation order): a
    /// page never repeats or skips a user because of inserts elsewhere.
    ///
    /// # Errors
    /// A malformed page token or one made for other filters; storage failures.
    pub async fn list(&self, actor: &str, input: ListUsersInput) -> Result<(Vec<User>, String), ApplicationError> {
        let size = match input.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(ApplicationError::invalid_field("page_size", format!("must be at most {MAX_PAGE_SIZE}")));
            }
            n => n,
        };
        let prefix = Some(input.email_prefix.trim().to_lowercase()).filter(|p| !p.is_empty());
        if prefix.as_ref().is_some_and(|p| p.len() > 254) {
            return Err(ApplicationError::invalid_field("email_prefix", "must be at most 254 characters"));
        }
        let status = input.status.map(|s| s.as_str().to_owned());
        let after = if input.page_token.is_empty() {
            None
        } else {
            let cursor = decode_cursor(&input.page_token)?;
            if cursor.status != status || cursor.prefix != prefix {
                return Err(ApplicationError::invalid_field("page_token", "was made for other filters"));
            }
            Some(UserId::from_uuid(cursor.after))
        };
        let query =
            UserListQuery { status: input.status, email_prefix: prefix.clone(), after, limit: u64::from(size) + 1 };
        let mut users = self.accounts.list(&query).await?;
        let next = if users.len() > size as usize {
            users.truncate(size as usize);
            users
                .last()
                .map(|last| encode_cursor(&Cursor { after: last.id().as_uuid(), status, prefix }))
                .unwrap_or_default()
        } else {
            String::new()
        };
        tracing::info!(target: "identity::audit", actor, action = "list_users", count = users.len(), "admin action");
        Ok((users, next))
    }

    /// Idempotent. Every session ends with its access tokens, whatever else
    /// runs on the account at the same time.
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn disable(&self, actor: &str, id: UserId) -> Result<User, ApplicationError> {
        let now = self.clock.now();
        let events = [
            UserEvent::new(id, now, UserChange::Disabled).into(),
            UserEvent::sessions_revoked(id, EndedSessions::AllBut(None), RevocationReason::UserDisabled, now).into(),
        ];
        let revocation = self.accounts.disable(id, now, &events).await?.ok_or(ApplicationError::NotFound)?;
        // Read under the row lock, so current even when nothing changed (a
        // disable on another replica): this replica refuses at once either way.
        self.guard.apply(&revocation).await;
        if revocation.changed {
            tracing::info!(target: "identity::audit", actor, action = "disable_user", user_id = %id, revoked_sessions = revocation.revoked_sessions.len(), "admin action");
        }
        Ok(revocation.user)
    }

    /// Idempotent.
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn enable(&self, actor: &str, id: UserId) -> Result<User, ApplicationError> {
        let now = self.clock.now();
        let events = [UserEvent::new(id, now, UserChange::Enabled).into()];
        let change = self.accounts.enable(id, now, &events).await?.ok_or(ApplicationError::NotFound)?;
        self.guard.remember(&change.user).await;
        if change.changed {
            audit(actor, "enable_user", id);
        }
        Ok(change.user)
    }

    /// Moves the user to another address, for support staff. Every session
    /// ends; the old address is told (unless that notice is off). An
    /// unverified address puts an active user back to pending verification and
    /// is sent a verification link.
    ///
    /// # Errors
    /// `NotFound`; `EmailTaken` when another account holds the address;
    /// `ChangedConcurrently` when the address changed under every one of
    /// three attempts; storage failures.
    pub async fn set_email(
        &self,
        actor: &str,
        id: UserId,
        email: Email,
        is_verified: bool,
    ) -> Result<User, ApplicationError> {
        // The events name the address being left, so they are built from a
        // read the write then checks under the row lock; a change that lands
        // in between costs a fresh read, a few times at most.
        let mut attempts = 0;
        let revocation = loop {
            attempts += 1;
            let user = self.users.find_by_id(id).await?.ok_or(ApplicationError::NotFound)?;
            let now = self.clock.now();
            let (events, verification) = self.address_change_events(&user, &email, is_verified, now);
            match self.accounts.set_email(&user, &email, is_verified, now, verification.as_ref(), &events).await? {
                Ok(revocation) => break revocation,
                Err(EmailChangeRefused::EmailTaken) => return Err(ApplicationError::EmailTaken),
                Err(EmailChangeRefused::NoLongerApplies) => return Err(ApplicationError::NotFound),
                Err(EmailChangeRefused::ChangedMeanwhile) if attempts < MAX_ATTEMPTS => {}
                Err(EmailChangeRefused::ChangedMeanwhile) => return Err(ApplicationError::ChangedConcurrently),
            }
        };
        self.guard.apply(&revocation).await;
        tracing::info!(target: "identity::audit", actor, action = "set_user_email", user_id = %id, is_verified, revoked_sessions = revocation.revoked_sessions.len(), "admin action");
        Ok(revocation.user)
    }

    /// What moving `user` (as read) to `email` writes: the notice to the old
    /// address, the user events, and a verification link when unverified.
    fn address_change_events(
        &self,
        user: &User,
        email: &Email,
        is_verified: bool,
        now: OffsetDateTime,
    ) -> (Vec<DomainEvent>, Option<NewSingleUseToken>) {
        let id = user.id();
        let mut events = Vec::new();
        if self.notices.email_changed && user.email() != email {
            events.push(DomainEvent::EmailChanged(notice_to(user, now)));
        }
        // Announced even when only the verification changed: `verified` says which.
        let changed =
            UserChange::EmailChanged { email: email.clone(), previous_email: user.email().clone(), is_verified };
        events.push(UserEvent::new(id, now, changed).into());
        events.push(
            UserEvent::sessions_revoked(id, EndedSessions::AllBut(None), RevocationReason::EmailChanged, now).into(),
        );
        let mut moved = user.clone();
        moved.change_email(email.clone(), is_verified, now);
        let verification = if is_verified {
            None
        } else {
            let (token, event) = new_verification(&moved, &self.verification_links, self.verification_ttl, now);
            events.push(event);
            Some(token)
        };
        (events, verification)
    }

    /// The user's logins that can still be refreshed, newest first (at most
    /// [`super::sessions::MAX_LISTED_SESSIONS`]).
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn list_sessions(&self, actor: &str, id: UserId) -> Result<Vec<LiveSession>, ApplicationError> {
        self.users.find_by_id(id).await?.ok_or(ApplicationError::NotFound)?;
        let sessions = self.sessions.list_live(id, self.clock.now(), super::sessions::MAX_LISTED_SESSIONS).await?;
        audit(actor, "list_user_sessions", id);
        Ok(sessions)
    }

    /// Ends every session of the user and refuses every access token issued
    /// to them so far, as `LogoutAll` does; returns how many sessions ended.
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn revoke_sessions(&self, actor: &str, id: UserId) -> Result<usize, ApplicationError> {
        let now = self.clock.now();
        let events =
            [UserEvent::sessions_revoked(id, EndedSessions::AllBut(None), RevocationReason::RevokedByAdmin, now)
                .into()];
        let revocation =
            self.accounts.revoke_all_sessions(id, now, &events).await?.ok_or(ApplicationError::NotFound)?;
        self.guard.apply(&revocation).await;
        let revoked = revocation.revoked_sessions.len();
        tracing::info!(target: "identity::audit", actor, action = "revoke_user_sessions", user_id = %id, revoked_sessions = revoked, "admin action");
        Ok(revoked)
    }

    /// Deletes the user and their personal data, and announces it.
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn delete(&self, actor: &str, id: UserId) -> Result<(), ApplicationError> {
        let event = UserEvent::new(id, self.clock.now(), UserChange::Deleted).into();
        if !self.accounts.delete(id, &event).await? {
            return Err(ApplicationError::NotFound);
        }
        self.guard.forget(id).await;
        audit(actor, "delete_user", id);
        Ok(())
    }

    /// Removes the user's second factor (support, when both the app and the
    /// recovery codes are lost) and tells them by email. Idempotent.
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    pub async fn reset_mfa(&self, actor: &str, id: UserId) -> Result<(), ApplicationError> {
        let user = self.users.find_by_id(id).await?.ok_or(ApplicationError::NotFound)?;
        let now = self.clock.now();
        let event = DomainEvent::TwoFactorDisabled(notice_to(&user, now));
        let removed = self.mfa.disable_totp(id, None, now, Some(&event)).await?;
        tracing::info!(target: "identity::audit", actor, action = "reset_mfa", user_id = %id, removed, "admin action");
        Ok(())
    }
}

fn encode_cursor(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode_cursor(token: &str) -> Result<Cursor, ApplicationError> {
    let invalid = || ApplicationError::invalid_field("page_token", "is not a token from a previous page");
    if token.len() > 1024 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor { after: Uuid::now_v7(), status: Some("active".into()), prefix: None };
        assert!(decode_cursor(&encode_cursor(&cursor)).unwrap() == cursor);
        assert!(decode_cursor("not a token").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode(b"{}")).is_err());
    }
}
