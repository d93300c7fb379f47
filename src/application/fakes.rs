//! Hand-written fakes of the ports, for use-case tests without a server. Each
//! keeps its state behind a mutex and records what it was asked; an operation
//! a test does not expect answers with an error rather than a made-up value.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use secrecy::SecretString;
use time::{OffsetDateTime, macros::datetime};
use uuid::Uuid;

use super::{AccessGuard, SessionIssuer};
use crate::domain::{
    AccessGrant, AccessTokenClaims, AuthMethods, ClientContext, DomainEvent, Email, IssuedToken, LoginAttemptKeys,
    NewPassword, PasswordHash, PersonNames, PlaintextPassword, ThrottleKey, ThrottlePolicy, TokenHash, User, UserId,
    ports::{
        AccessTokenIssuer, AccountRepository, Clock, DeviceSighting, EmailChangeRefused, EmailChangeTarget,
        HashingError, InsertUserError, InvalidAccessToken, LiveSession, LoginCommit, MfaChallengeRecord,
        MfaLoginCommit, MfaRepository, NewMfaChallenge, NewSession, NewSingleUseToken, PasswordChangeRefused,
        PasswordHasher, PublicKeyInfo, RepositoryError, Revocation, Rotation, SecondFactorProof, SendHistory,
        SessionRecord, SessionRepository, SingleUseTokenRecord, SingleUseTokens, StoredCredentials, TokenPurpose,
        TotpEnrollment, UserListQuery, UserRepository,
    },
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_faked(what: &str) -> RepositoryError {
    RepositoryError::Unexpected(anyhow::anyhow!("{what} is not faked"))
}

pub const T0: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

/// A clock that moves only when told to.
pub struct FixedClock(Mutex<OffsetDateTime>);

impl FixedClock {
    pub fn at(now: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(now)))
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        *lock(&self.0)
    }
}

pub fn email(raw: &str) -> Email {
    Email::parse(raw).expect("a valid test address")
}

pub fn password(raw: &str) -> PlaintextPassword {
    PlaintextPassword::parse(raw.to_owned()).expect("a valid test password")
}

/// An active user, verified at `T0`.
pub fn active_user(address: &str) -> User {
    let mut user = User::sign_up(UserId::new_v7(), email(address), PersonNames::default(), T0);
    user.verify_email(T0).expect("a pending user verifies");
    user
}

/// "Hashes" by prefixing, so that tests can tell which password a hash is of.
#[derive(Default)]
pub struct FakeHasher {
    pub verifications: Mutex<u32>,
    /// What `needs_rehash` answers for every hash.
    pub weaker_than_configured: Mutex<bool>,
}

impl FakeHasher {
    pub fn hash_of(raw: &str) -> PasswordHash {
        PasswordHash::from_phc(format!("fake${raw}"))
    }

    pub fn verifications(&self) -> u32 {
        *lock(&self.verifications)
    }
}

#[async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &NewPassword) -> Result<PasswordHash, HashingError> {
        Ok(Self::hash_of(password.as_plaintext().expose()))
    }

    async fn verify(&self, password: &PlaintextPassword, hash: Option<&PasswordHash>) -> Result<bool, HashingError> {
        *lock(&self.verifications) += 1;
        Ok(hash.is_some_and(|hash| hash.as_str() == Self::hash_of(password.expose()).as_str()))
    }

    fn needs_rehash(&self, _: &PasswordHash) -> bool {
        *lock(&self.weaker_than_configured)
    }

    fn can_verify(&self, hash: &PasswordHash) -> bool {
        !hash.as_str().starts_with('!')
    }
}

/// Admits while `refuse_with` is `None`; counts admitted attempts (each one a
/// failure until `succeeded`) and successes.
#[derive(Default)]
pub struct FakeThrottles {
    pub refuse_with: Mutex<Option<Duration>>,
    pub admitted: Mutex<u32>,
    pub succeeded: Mutex<u32>,
    pub resets: Mutex<Vec<ThrottleKey>>,
}

impl FakeThrottles {
    pub fn admitted(&self) -> u32 {
        *lock(&self.admitted)
    }

    pub fn succeeded(&self) -> u32 {
        *lock(&self.succeeded)
    }
}

#[async_trait]
impl crate::domain::ports::LoginThrottles for FakeThrottles {
    async fn admit(
        &self,
        _: &LoginAttemptKeys,
        _: OffsetDateTime,
        _: ThrottlePolicy,
    ) -> Result<Result<(), Duration>, RepositoryError> {
        if let Some(wait) = *lock(&self.refuse_with) {
            return Ok(Err(wait));
        }
        *lock(&self.admitted) += 1;
        Ok(Ok(()))
    }

    async fn succeeded(&self, _: &LoginAttemptKeys, _: OffsetDateTime) -> Result<(), RepositoryError> {
        *lock(&self.succeeded) += 1;
        Ok(())
    }

    async fn reset(&self, key: &ThrottleKey) -> Result<(), RepositoryError> {
        lock(&self.resets).push(key.clone());
        Ok(())
    }
}

pub fn throttle_policy() -> ThrottlePolicy {
    ThrottlePolicy {
        free_attempts: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(900),
        hard_cap: ThrottlePolicy::NIST_HARD_CAP,
        hard_cap_window: Duration::from_secs(86_400),
    }
}

/// What `change_password` was asked: user, new hash, verified version, kept session.
pub type PasswordChange = (UserId, PasswordHash, i32, Option<Uuid>);

/// Users with their credentials, for `UserRepository` and `AccountRepository`.
/// With `gate` set, `find_by_id` reads, then waits for the gate's lock before
/// answering, so that a test holding it can change things while a read is in
/// flight.
#[derive(Default)]
pub struct FakeUsers {
    pub users: Mutex<HashMap<UserId, (User, StoredCredentials)>>,
    pub gate: Mutex<Option<Arc<futures_util::lock::Mutex<()>>>>,
    /// What `change_password` and `complete_password_reset` answer.
    pub change_outcome: Mutex<Option<Result<Revocation, PasswordChangeRefused>>>,
    pub reset_outcome: Mutex<Option<Revocation>>,
    pub changes: Mutex<Vec<PasswordChange>>,
    /// What `complete_email_change` answers, and the events it was given.
    pub email_change_outcome: Mutex<Option<Result<Revocation, EmailChangeRefused>>>,
    pub email_change_events: Mutex<Vec<DomainEvent>>,
    /// The events `change_password` and `complete_password_reset` were given.
    pub password_events: Mutex<Vec<DomainEvent>>,
    /// Users whose hash `upgrade_password_hash` replaced.
    pub upgraded: Mutex<Vec<UserId>>,
}

impl FakeUsers {
    pub fn with(user: &User, raw_password: &str) -> Arc<Self> {
        let fake = Self::default();
        let credentials =
            StoredCredentials { hash: FakeHasher::hash_of(raw_password), version: 0, has_second_factor: false };
        lock(&fake.users).insert(user.id(), (user.clone(), credentials));
        Arc::new(fake)
    }

    fn by_email(&self, email: &Email) -> Option<(User, StoredCredentials)> {
        lock(&self.users).values().find(|(user, _)| user.email() == email).cloned()
    }
}

#[async_trait]
impl UserRepository for FakeUsers {
    async fn insert_with_verification(
        &self,
        _: &User,
        _: &PasswordHash,
        _: &NewSingleUseToken,
        _: &[DomainEvent],
    ) -> Result<(), InsertUserError> {
        Err(not_faked("insert_with_verification").into())
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        // Read first, answer after the gate opens: the answer is what the
        // database held when the read started.
        let found = lock(&self.users).get(&id).map(|(user, _)| user.clone());
        let gate = lock(&self.gate).clone();
        if let Some(gate) = gate {
            drop(gate.lock().await);
        }
        Ok(found)
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError> {
        Ok(self.by_email(email).map(|(user, _)| user))
    }

    async fn find_by_legacy_id(&self, legacy_id: &str) -> Result<Option<User>, RepositoryError> {
        Ok(lock(&self.users)
            .values()
            .find(|(user, _)| user.legacy_id() == Some(legacy_id))
            .map(|(user, _)| user.clone()))
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        verified_version: i32,
        hash: &PasswordHash,
    ) -> Result<bool, RepositoryError> {
        let mut users = lock(&self.users);
        match users.get_mut(&id) {
            Some((_, credentials)) if credentials.version == verified_version => {
                credentials.hash = hash.clone();
                lock(&self.upgraded).push(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn find_credentials_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(User, StoredCredentials)>, RepositoryError> {
        Ok(self.by_email(email))
    }

    async fn complete_verification(&self, _: &TokenHash, _: &User, _: &[DomainEvent]) -> Result<bool, RepositoryError> {
        Err(not_faked("complete_verification"))
    }
}

#[async_trait]
impl AccountRepository for FakeUsers {
    async fn find_credentials_by_id(&self, id: UserId) -> Result<Option<(User, StoredCredentials)>, RepositoryError> {
        Ok(lock(&self.users).get(&id).cloned())
    }

    async fn change_password(
        &self,
        user_id: UserId,
        hash: &PasswordHash,
        verified_version: i32,
        keep: Option<Uuid>,
        _: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, PasswordChangeRefused>, RepositoryError> {
        lock(&self.changes).push((user_id, hash.clone(), verified_version, keep));
        lock(&self.password_events).extend_from_slice(events);
        lock(&self.change_outcome).take().ok_or_else(|| not_faked("change_password"))
    }

    async fn revoke_all_sessions(
        &self,
        _: UserId,
        _: OffsetDateTime,
        _: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        Err(not_faked("revoke_all_sessions"))
    }

    async fn disable(
        &self,
        _: UserId,
        _: OffsetDateTime,
        _: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        Err(not_faked("disable"))
    }

    async fn enable(
        &self,
        _: UserId,
        _: OffsetDateTime,
        _: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        Err(not_faked("enable"))
    }

    async fn delete(&self, _: UserId, _: &DomainEvent) -> Result<bool, RepositoryError> {
        Err(not_faked("delete"))
    }

    async fn list(&self, _: &UserListQuery) -> Result<Vec<User>, RepositoryError> {
        Err(not_faked("list"))
    }

    async fn record_event(&self, _: &DomainEvent) -> Result<(), RepositoryError> {
        Err(not_faked("record_event"))
    }

    async fn complete_password_reset(
        &self,
        _: &TokenHash,
        _: UserId,
        _: &PasswordHash,
        _: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        lock(&self.password_events).extend_from_slice(events);
        Ok(lock(&self.reset_outcome).take())
    }

    async fn complete_email_change(
        &self,
        _: &TokenHash,
        _: &User,
        _: &EmailChangeTarget,
        _: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, EmailChangeRefused>, RepositoryError> {
        lock(&self.email_change_events).extend_from_slice(events);
        lock(&self.email_change_outcome).take().ok_or_else(|| not_faked("complete_email_change"))
    }

    async fn set_email(
        &self,
        _: &User,
        _: &Email,
        _: bool,
        _: OffsetDateTime,
        _: Option<&NewSingleUseToken>,
        _: &[DomainEvent],
    ) -> Result<Result<Revocation, EmailChangeRefused>, RepositoryError> {
        Err(not_faked("set_email"))
    }
}

/// Single-use tokens with their attempt counts.
#[derive(Default)]
pub struct FakeTokens {
    pub tokens: Mutex<HashMap<TokenHash, (SingleUseTokenRecord, u32)>>,
    /// What `replace` stored: the token and the events written with it.
    pub replaced: Mutex<Vec<(TokenPurpose, NewSingleUseToken, Vec<DomainEvent>)>>,
}

#[async_trait]
impl SingleUseTokens for FakeTokens {
    async fn find(&self, _: TokenPurpose, hash: &TokenHash) -> Result<Option<SingleUseTokenRecord>, RepositoryError> {
        Ok(lock(&self.tokens).get(hash).map(|(record, _)| record.clone()))
    }

    async fn count_attempt(
        &self,
        _: TokenPurpose,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError> {
        // Like the SQL adapter: the increment is conditional and comes first.
        let mut tokens = lock(&self.tokens);
        let Some((record, attempts)) = tokens.get_mut(hash) else { return Ok(None) };
        if record.is_spent || *attempts >= max_attempts {
            return Ok(None);
        }
        *attempts += 1;
        Ok(Some(record.clone()))
    }

    /// Nothing sent yet, unless `replace` stored something.
    async fn history(
        &self,
        purpose: TokenPurpose,
        _: UserId,
        _: OffsetDateTime,
    ) -> Result<SendHistory, RepositoryError> {
        let replaced = lock(&self.replaced);
        let sent: Vec<_> = replaced.iter().filter(|(p, _, _)| *p == purpose).collect();
        Ok(SendHistory {
            sent_since: u32::try_from(sent.len()).unwrap_or(u32::MAX),
            last_sent_at: sent.last().map(|(_, token, _)| token.created_at),
        })
    }

    async fn replace(
        &self,
        purpose: TokenPurpose,
        _: UserId,
        _: Option<OffsetDateTime>,
        token: &NewSingleUseToken,
        events: &[DomainEvent],
    ) -> Result<bool, RepositoryError> {
        lock(&self.replaced).push((purpose, token.clone(), events.to_vec()));
        Ok(true)
    }
}

/// Sessions by token hash; `rotate` and `insert_for_login` answer what the
/// test set (by default: rotated / created).
#[derive(Default)]
pub struct FakeSessions {
    pub by_hash: Mutex<HashMap<TokenHash, SessionRecord>>,
    pub by_id: Mutex<HashMap<Uuid, SessionRecord>>,
    pub login_commit: Mutex<Option<LoginCommit>>,
    pub rotation: Mutex<Option<Rotation>>,
    pub inserted: Mutex<Vec<NewSession>>,
    /// The devices logins asked to remember, in order.
    pub sightings: Mutex<Vec<DeviceSighting>>,
    pub revoked_families: Mutex<Vec<Uuid>>,
    /// The throttle counters logins cleared with their session.
    pub cleared_throttles: Mutex<Vec<LoginAttemptKeys>>,
    /// The events written with a session stored or a family revoked.
    pub events: Mutex<Vec<DomainEvent>>,
}

impl FakeSessions {
    pub fn record_of(session: &NewSession) -> SessionRecord {
        SessionRecord {
            id: session.id,
            family_id: session.family_id,
            user_id: session.user_id,
            expires_at: session.expires_at,
            authenticated_at: session.authenticated_at,
            methods: session.methods,
            rotated_at: None,
            is_revoked: false,
        }
    }

    pub fn store(&self, session: &NewSession, change: impl FnOnce(&mut SessionRecord)) {
        let mut record = Self::record_of(session);
        change(&mut record);
        lock(&self.by_hash).insert(session.token_hash, record.clone());
        lock(&self.by_id).insert(record.id, record);
    }
}

#[async_trait]
impl SessionRepository for FakeSessions {
    async fn insert_for_login(
        &self,
        session: &NewSession,
        _: i32,
        _: Option<&PasswordHash>,
        events: &[DomainEvent],
        device: Option<&DeviceSighting>,
        throttle: &LoginAttemptKeys,
    ) -> Result<LoginCommit, RepositoryError> {
        let commit = lock(&self.login_commit).unwrap_or(LoginCommit::Created);
        if commit == LoginCommit::Created {
            lock(&self.cleared_throttles).push(throttle.clone());
            lock(&self.sightings).extend(device.cloned());
            lock(&self.inserted).push(session.clone());
            lock(&self.events).extend_from_slice(events);
        }
        Ok(commit)
    }

    async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, RepositoryError> {
        Ok(lock(&self.by_hash).get(hash).cloned())
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<SessionRecord>, RepositoryError> {
        Ok(lock(&self.by_id).get(&id).cloned())
    }

    async fn rotate(
        &self,
        _: &SessionRecord,
        new: &NewSession,
        _: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError> {
        let rotation = lock(&self.rotation).take().ok_or_else(|| not_faked("rotate"))?;
        if matches!(rotation, Rotation::Rotated(_)) {
            lock(&self.inserted).push(new.clone());
        }
        Ok(rotation)
    }

    async fn add_sibling(
        &self,
        spent: &SessionRecord,
        new: &NewSession,
        rotated_after: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError> {
        let stored = lock(&self.by_id).get(&spent.id).cloned().ok_or_else(|| not_faked("add_sibling"))?;
        let is_family_revoked = lock(&self.by_id).values().any(|r| r.family_id == spent.family_id && r.is_revoked);
        if is_family_revoked || stored.rotated_at.is_none_or(|at| at <= rotated_after) {
            return Ok(Rotation::Lost);
        }
        let rotation = lock(&self.rotation).take().ok_or_else(|| not_faked("add_sibling"))?;
        if matches!(rotation, Rotation::Rotated(_)) {
            lock(&self.inserted).push(new.clone());
        }
        Ok(rotation)
    }

    async fn revoke_family(
        &self,
        member: &SessionRecord,
        _: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Vec<Uuid>, RepositoryError> {
        let family_id = member.family_id;
        lock(&self.revoked_families).push(family_id);
        let mut revoked = Vec::new();
        for record in lock(&self.by_id).values_mut().filter(|r| r.family_id == family_id && !r.is_revoked) {
            record.is_revoked = true;
            revoked.push(record.id);
        }
        if !revoked.is_empty() {
            lock(&self.events).extend_from_slice(events);
        }
        Ok(revoked)
    }

    async fn list_live(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<LiveSession>, RepositoryError> {
        let mut live: Vec<LiveSession> = lock(&self.by_id)
            .values()
            .filter(|r| r.user_id == user_id && r.rotated_at.is_none() && !r.is_revoked && r.expires_at > now)
            .map(|r| LiveSession {
                id: r.family_id,
                user_id: r.user_id,
                created_at: r.authenticated_at,
                last_used_at: r.authenticated_at,
                expires_at: r.expires_at,
                context: ClientContext::default(),
            })
            .collect();
        live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        live.truncate(limit);
        Ok(live)
    }

    async fn revoke_live_family(
        &self,
        user_id: UserId,
        family_id: Uuid,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Vec<Uuid>>, RepositoryError> {
        let member = lock(&self.by_id)
            .values()
            .find(|r| {
                r.user_id == user_id
                    && r.family_id == family_id
                    && r.rotated_at.is_none()
                    && !r.is_revoked
                    && r.expires_at > now
            })
            .cloned();
        match member {
            Some(member) => self.revoke_family(&member, now, events).await.map(Some),
            None => Ok(None),
        }
    }
}

/// Access tokens spelled `user-id/session-id/unix-seconds/amr`: no signature,
/// as the use cases only need claims back.
pub struct FakeTokenIssuer;

impl AccessTokenIssuer for FakeTokenIssuer {
    fn issue_for(&self, grant: &AccessGrant, now: OffsetDateTime) -> anyhow::Result<IssuedToken> {
        let amr = grant.methods.as_str().replace(' ', "+");
        Ok(IssuedToken {
            token: SecretString::from(format!(
                "{}/{}/{}/{amr}",
                grant.user_id.as_uuid(),
                grant.session_id,
                now.unix_timestamp()
            )),
            expires_at: now + Duration::from_secs(900),
        })
    }

    fn verify(&self, token: &str, _: OffsetDateTime) -> Result<AccessTokenClaims, InvalidAccessToken> {
        let mut parts = token.split('/');
        let (Some(user), Some(session), Some(at), Some(amr), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidAccessToken::Malformed);
        };
        let methods = AuthMethods::parse(&amr.replace('+', " ")).ok_or(InvalidAccessToken::Malformed)?;
        let user_id = UserId::parse(user).map_err(|_| InvalidAccessToken::Malformed)?;
        let session_id = Uuid::parse_str(session).map_err(|_| InvalidAccessToken::Malformed)?;
        let issued_at = at
            .parse()
            .ok()
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok())
            .ok_or(InvalidAccessToken::Malformed)?;
        Ok(AccessTokenClaims {
            user_id,
            issuer: "test".into(),
            audience: "test".into(),
            issued_at,
            not_before: issued_at,
            expires_at: issued_at + Duration::from_secs(900),
            token_id: Uuid::now_v7(),
            key_id: "test".into(),
            session_id: Some(session_id),
            methods,
            authenticated_at: None,
        })
    }

    fn public_keys(&self) -> Vec<PublicKeyInfo> {
        Vec::new()
    }
}

pub fn issuer(clock: &Arc<FixedClock>, max_lifetime: Duration) -> Arc<SessionIssuer> {
    Arc::new(SessionIssuer {
        tokens: Arc::new(FakeTokenIssuer),
        clock: clock.clone(),
        refresh_ttl: Duration::from_secs(3600),
        max_lifetime,
        notify_new_device: true,
    })
}

pub fn guard(users: &Arc<FakeUsers>, sessions: &Arc<FakeSessions>, clock: &Arc<FixedClock>) -> Arc<AccessGuard> {
    Arc::new(AccessGuard::new(
        Arc::new(FakeTokenIssuer),
        users.clone(),
        sessions.clone(),
        clock.clone(),
        Duration::from_secs(60),
    ))
}

/// TOTP enrolments, recovery codes and challenges in memory, with the same
/// conditional spending as the database.
#[derive(Default)]
pub struct FakeMfa {
    pub totp: Mutex<HashMap<UserId, TotpEnrollment>>,
    /// Each user's recovery code digests, with whether each was used.
    pub recovery_codes: Mutex<HashMap<UserId, Vec<(TokenHash, bool)>>>,
    /// Challenges by digest: the challenge, attempts counted, whether spent.
    pub challenges: Mutex<HashMap<TokenHash, (NewMfaChallenge, u32, bool)>>,
    pub events: Mutex<Vec<DomainEvent>>,
    pub sessions: Mutex<Vec<NewSession>>,
}

impl FakeMfa {
    fn spend(&self, user_id: UserId, proof: &SecondFactorProof) -> bool {
        match proof {
            SecondFactorProof::TotpStep(step) => match lock(&self.totp).get_mut(&user_id) {
                Some(e) if e.is_confirmed && e.last_step.is_none_or(|last| last < *step) => {
                    e.last_step = Some(*step);
                    true
                }
                _ => false,
            },
            SecondFactorProof::RecoveryCode(hash) => {
                let mut codes = lock(&self.recovery_codes);
                match codes.get_mut(&user_id).and_then(|c| c.iter_mut().find(|(h, used)| h == hash && !used)) {
                    Some(code) => {
                        code.1 = true;
                        true
                    }
                    None => false,
                }
            }
        }
    }

    fn store_codes(&self, user_id: UserId, codes: &[TokenHash]) {
        lock(&self.recovery_codes).insert(user_id, codes.iter().map(|h| (*h, false)).collect());
    }
}

#[async_trait]
impl MfaRepository for FakeMfa {
    async fn find_totp(&self, user_id: UserId) -> Result<Option<TotpEnrollment>, RepositoryError> {
        Ok(lock(&self.totp).get(&user_id).cloned())
    }

    async fn save_pending_totp(
        &self,
        user_id: UserId,
        ciphertext: &str,
        _: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let mut totp = lock(&self.totp);
        if totp.get(&user_id).is_some_and(|e| e.is_confirmed) {
            return Ok(false);
        }
        let pending = TotpEnrollment {
            ciphertext: ciphertext.to_owned(),
            is_confirmed: false,
            pending_expires_at: expires_at,
            last_step: None,
        };
        totp.insert(user_id, pending);
        Ok(true)
    }

    async fn confirm_totp(
        &self,
        user_id: UserId,
        ciphertext: &str,
        step: i64,
        codes: &[TokenHash],
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError> {
        {
            let mut totp = lock(&self.totp);
            let Some(e) = totp.get_mut(&user_id) else { return Ok(false) };
            if e.is_confirmed || e.ciphertext != ciphertext || now >= e.pending_expires_at {
                return Ok(false);
            }
            e.is_confirmed = true;
            e.last_step = Some(step);
        }
        self.store_codes(user_id, codes);
        lock(&self.events).push(event.clone());
        Ok(true)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: UserId,
        proof: &SecondFactorProof,
        codes: &[TokenHash],
        _: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        if !self.spend(user_id, proof) {
            return Ok(false);
        }
        self.store_codes(user_id, codes);
        Ok(true)
    }

    async fn disable_totp(
        &self,
        user_id: UserId,
        proof: Option<&SecondFactorProof>,
        _: OffsetDateTime,
        event: Option<&DomainEvent>,
    ) -> Result<bool, RepositoryError> {
        if proof.is_some_and(|proof| !self.spend(user_id, proof)) || lock(&self.totp).remove(&user_id).is_none() {
            return Ok(false);
        }
        lock(&self.recovery_codes).remove(&user_id);
        lock(&self.events).extend(event.cloned());
        Ok(true)
    }

    async fn insert_challenge(&self, challenge: &NewMfaChallenge) -> Result<(), RepositoryError> {
        lock(&self.challenges).insert(challenge.token_hash, (challenge.clone(), 0, false));
        Ok(())
    }

    async fn count_challenge_attempt(
        &self,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<MfaChallengeRecord>, RepositoryError> {
        let mut challenges = lock(&self.challenges);
        let Some((challenge, attempts, spent)) = challenges.get_mut(hash) else { return Ok(None) };
        if *spent || *attempts >= max_attempts {
            return Ok(None);
        }
        *attempts += 1;
        Ok(Some(MfaChallengeRecord {
            user_id: challenge.user_id,
            password_version: challenge.password_version,
            expires_at: challenge.expires_at,
        }))
    }

    async fn complete_login(
        &self,
        challenge: &TokenHash,
        proof: &SecondFactorProof,
        session: &NewSession,
        _: i32,
        _: &[DomainEvent],
        _: Option<&DeviceSighting>,
    ) -> Result<MfaLoginCommit, RepositoryError> {
        if lock(&self.challenges).get(challenge).is_none_or(|(_, _, spent)| *spent) {
            return Ok(MfaLoginCommit::ChallengeSpent);
        }
        if !self.spend(session.user_id, proof) {
            return Ok(MfaLoginCommit::ProofSpent);
        }
        if let Some(entry) = lock(&self.challenges).get_mut(challenge) {
            entry.2 = true;
        }
        lock(&self.sessions).push(session.clone());
        Ok(MfaLoginCommit::Created)
    }
}
