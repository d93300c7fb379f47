//! Two-factor login with TOTP: enrolment (begin, confirm), turning it off,
//! new recovery codes, and completing a login that Login answered with a
//! challenge.

use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccessGuard, ApplicationError, MfaRefusal, SessionIssuer, SessionTokens};
use crate::domain::{
    AccountNotice, AuthMethods, ClientAddress, ClientContext, DomainEvent, LoginAttemptKeys, OpaqueToken,
    PlaintextPassword, RecoveryCode, SecondFactor, ThrottlePolicy, TotpCode, TotpSecret, User, UserEvent,
    mfa::acceptable_steps,
    ports::{
        AccountRepository, Clock, InvalidAccessToken, LoginThrottles, MfaLoginCommit, MfaRepository, PasswordHasher,
        SecondFactorProof, SecretCipher, StoredCredentials, TotpAlgorithm, TotpEnrollment, UserRepository,
    },
};

/// How long a begun enrolment waits for its first code.
pub const ENROLLMENT_TTL: Duration = Duration::from_secs(10 * 60);
/// Codes one login challenge may be tried with before it is spent.
pub const CHALLENGE_MAX_ATTEMPTS: u32 = 5;

const WRONG_CODE: &str =
    "is not a valid code: use the current code of the authenticator app, or an unused recovery code";
const WRONG_PASSWORD: &str = "is not the current password";

/// What every two-factor use case shares: the store, the key, the algorithm.
pub struct SecondFactors {
    pub mfa: Arc<dyn MfaRepository>,
    /// `None` when `IDENTITY_MFA_ENCRYPTION_KEY` is not set: nobody can enrol.
    pub cipher: Option<Arc<dyn SecretCipher>>,
    pub totp: Arc<dyn TotpAlgorithm>,
    pub clock: Arc<dyn Clock>,
}

impl SecondFactors {
    fn cipher(&self) -> Result<&dyn SecretCipher, ApplicationError> {
        self.cipher.as_deref().ok_or(ApplicationError::Mfa(MfaRefusal::NotConfigured))
    }

    /// The confirmed enrolment of `user`.
    async fn confirmed(&self, user: &User) -> Result<TotpEnrollment, ApplicationError> {
        match self.mfa.find_totp(user.id()).await? {
            Some(enrollment) if enrollment.is_confirmed => Ok(enrollment),
            _ => Err(MfaRefusal::NotEnabled.into()),
        }
    }

    /// What the factor proves, if it checks out as far as can be told before
    /// it is spent: a TOTP code must match a step newer than the last one
    /// accepted; a recovery code is only known to be unused when it is spent
    /// (a conditional update), so it is passed on as its digest.
    fn proof(
        &self,
        user: &User,
        enrollment: &TotpEnrollment,
        factor: &SecondFactor,
    ) -> Result<Option<SecondFactorProof>, ApplicationError> {
        match factor {
            SecondFactor::Totp(code) => {
                let secret = self.cipher()?.decrypt(&enrollment.ciphertext, user.id())?;
                let step = self.matching_step(&secret, code, enrollment.last_step)?;
                Ok(step.map(SecondFactorProof::TotpStep))
            }
            SecondFactor::RecoveryCode(code) => Ok(Some(SecondFactorProof::RecoveryCode(code.hash()))),
        }
    }

    fn matching_step(
        &self,
        secret: &TotpSecret,
        code: &TotpCode,
        last_step: Option<i64>,
    ) -> Result<Option<i64>, ApplicationError> {
        // A step accepted once (or before one accepted) never is again: no replay.
        let candidates: Vec<i64> =
            acceptable_steps(self.clock.now()).filter(|step| last_step.is_none_or(|last| *step > last)).collect();
        Ok(self.totp.matching_step(secret, code, &candidates)?)
    }
}

fn notice(user: &User, now: OffsetDateTime, make: fn(AccountNotice) -> DomainEvent) -> DomainEvent {
    make(AccountNotice {
        event_id: Uuid::now_v7(),
        user_id: user.id(),
        email: user.email().clone(),
        display_name: user.greeting_name(),
        occurred_at: now,
    })
}

fn recovery_code_set() -> (Vec<RecoveryCode>, Vec<crate::domain::TokenHash>) {
    let codes = RecoveryCode::generate_set();
    let hashes = codes.iter().map(RecoveryCode::hash).collect();
    (codes, hashes)
}

/// The caller's user and credentials, from their access token.
async fn caller(
    guard: &AccessGuard,
    accounts: &dyn AccountRepository,
    access_token: &str,
) -> Result<(User, StoredCredentials), ApplicationError> {
    let claims = guard.authenticate(access_token).await?;
    tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
    Ok(accounts.find_credentials_by_id(claims.user_id).await?.ok_or(InvalidAccessToken::Revoked)?)
}

/// Checks the current password the way Login does: counted before it is
/// checked, against the same per-account and per-address counters.
struct PasswordCheck<'a> {
    hasher: &'a dyn PasswordHasher,
    throttles: &'a dyn LoginThrottles,
    policy: ThrottlePolicy,
    clock: &'a dyn Clock,
}

impl PasswordCheck<'_> {
    async fn verify(
        &self,
        keys: &LoginAttemptKeys,
        password: &PlaintextPassword,
        stored: &StoredCredentials,
    ) -> Result<(), ApplicationError> {
        if let Err(retry_after) = self.throttles.admit(keys, self.clock.now(), self.policy).await? {
            return Err(ApplicationError::RateLimited { retry_after });
        }
        if !self.hasher.verify(password, Some(&stored.hash)).await? {
            tracing::info!(throttle_key = keys.account.as_str(), "two-factor change refused: wrong current password");
            return Err(ApplicationError::invalid_field("current_password", WRONG_PASSWORD));
        }
        Ok(())
    }
}

/// A begun enrolment: the secret for the authenticator app, shown once.
#[derive(Debug)]
pub struct TotpEnrollmentStarted {
    /// Base32, for typing into an app.
    pub secret: SecretString,
    /// `otpauth://totp/...`, for a QR code.
    pub otpauth_uri: SecretString,
    pub expires_at: OffsetDateTime,
}

/// Starts TOTP enrolment: a new secret, pending until a code from it is confirmed.
pub struct BeginTotpEnrollment {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub factors: Arc<SecondFactors>,
    /// `IDENTITY_MFA_ISSUER`: the name authenticator apps show.
    pub issuer: String,
}

impl BeginTotpEnrollment {
    /// A second call replaces the pending secret; nothing is active until confirmed.
    ///
    /// # Errors
    /// Invalid token; wrong password (`InvalidInput`); throttled; TOTP already
    /// on or not configured (`Mfa`); storage failures.
    #[tracing::instrument(name = "begin_totp_enrollment", skip_all, fields(user_id))]
    pub async fn execute(
        &self,
        access_token: &str,
        current_password: PlaintextPassword,
        client: Option<ClientAddress>,
    ) -> Result<TotpEnrollmentStarted, ApplicationError> {
        let cipher = self.factors.cipher()?;
        let (user, stored) = caller(&self.guard, self.accounts.as_ref(), access_token).await?;
        let keys = LoginAttemptKeys::new(user.email(), client.as_ref());
        let check = PasswordCheck {
            hasher: self.hasher.as_ref(),
            throttles: self.throttles.as_ref(),
            policy: self.throttle_policy,
            clock: self.factors.clock.as_ref(),
        };
        check.verify(&keys, &current_password, &stored).await?;
        self.throttles.succeeded(&keys, self.factors.clock.now()).await?;
        if stored.has_second_factor {
            return Err(MfaRefusal::AlreadyEnabled.into());
        }
        let secret = TotpSecret::generate();
        let now = self.factors.clock.now();
        let expires_at = now + ENROLLMENT_TTL;
        let ciphertext = cipher.encrypt(&secret, user.id())?;
        if !self.factors.mfa.save_pending_totp(user.id(), &ciphertext, now, expires_at).await? {
            return Err(MfaRefusal::AlreadyEnabled.into());
        }
        tracing::info!(user_id = %user.id(), "totp enrolment begun");
        Ok(TotpEnrollmentStarted {
            secret: self.factors.totp.encoded_secret(&secret),
            otpauth_uri: self.factors.totp.provisioning_uri(&secret, &self.issuer, user.email().as_str())?,
            expires_at,
        })
    }
}

/// Confirms a pending enrolment with a code from the app: TOTP is on from then.
pub struct ConfirmTotpEnrollment {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub factors: Arc<SecondFactors>,
}

impl ConfirmTotpEnrollment {
    /// Returns the recovery codes, shown this once.
    ///
    /// # Errors
    /// Invalid token; no pending enrolment (`Mfa`); a wrong code
    /// (`InvalidInput`); storage failures.
    #[tracing::instrument(name = "confirm_totp_enrollment", skip_all, fields(user_id))]
    pub async fn execute(&self, access_token: &str, code: TotpCode) -> Result<Vec<RecoveryCode>, ApplicationError> {
        let cipher = self.factors.cipher()?;
        let (user, _) = caller(&self.guard, self.accounts.as_ref(), access_token).await?;
        let now = self.factors.clock.now();
        let enrollment = match self.factors.mfa.find_totp(user.id()).await? {
            Some(e) if e.is_confirmed => return Err(MfaRefusal::AlreadyEnabled.into()),
            Some(e) if now < e.pending_expires_at => e,
            _ => return Err(MfaRefusal::NoPendingEnrollment.into()),
        };
        let secret = cipher.decrypt(&enrollment.ciphertext, user.id())?;
        let Some(step) = self.factors.matching_step(&secret, &code, None)? else {
            return Err(ApplicationError::invalid_field("code", WRONG_CODE));
        };
        let (codes, hashes) = recovery_code_set();
        let event = notice(&user, now, DomainEvent::TwoFactorEnabled);
        if !self.factors.mfa.confirm_totp(user.id(), &enrollment.ciphertext, step, &hashes, now, &event).await? {
            // Replaced by a newer enrolment, or expired, meanwhile.
            return Err(MfaRefusal::NoPendingEnrollment.into());
        }
        tracing::info!(user_id = %user.id(), "totp enrolment confirmed: two-factor login on");
        Ok(codes)
    }
}

/// Turns TOTP off, proving both the password and a second factor.
pub struct DisableTotp {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub factors: Arc<SecondFactors>,
}

impl DisableTotp {
    /// # Errors
    /// Invalid token; wrong password or code (`InvalidInput`); throttled; TOTP
    /// not on (`Mfa`); storage failures.
    #[tracing::instrument(name = "disable_totp", skip_all, fields(user_id))]
    pub async fn execute(
        &self,
        access_token: &str,
        current_password: PlaintextPassword,
        code: SecondFactor,
        client: Option<ClientAddress>,
    ) -> Result<(), ApplicationError> {
        let (user, stored) = caller(&self.guard, self.accounts.as_ref(), access_token).await?;
        let keys = LoginAttemptKeys::new(user.email(), client.as_ref());
        let check = PasswordCheck {
            hasher: self.hasher.as_ref(),
            throttles: self.throttles.as_ref(),
            policy: self.throttle_policy,
            clock: self.factors.clock.as_ref(),
        };
        check.verify(&keys, &current_password, &stored).await?;
        let enrollment = self.factors.confirmed(&user).await?;
        let Some(proof) = self.factors.proof(&user, &enrollment, &code)? else {
            return Err(ApplicationError::invalid_field("code", WRONG_CODE));
        };
        let now = self.factors.clock.now();
        let event = notice(&user, now, DomainEvent::TwoFactorDisabled);
        if !self.factors.mfa.disable_totp(user.id(), Some(&proof), now, Some(&event)).await? {
            return Err(ApplicationError::invalid_field("code", WRONG_CODE));
        }
        self.throttles.succeeded(&keys, now).await?;
        tracing::info!(user_id = %user.id(), "two-factor login turned off");
        Ok(())
    }
}

/// Replaces the recovery codes, proving a second factor.
pub struct RegenerateRecoveryCodes {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub factors: Arc<SecondFactors>,
}

impl RegenerateRecoveryCodes {
    /// A wrong code counts as a failed login (a stolen access token must not
    /// become a code oracle); a right one does not clear the count, as it
    /// proves no password.
    ///
    /// # Errors
    /// Invalid token; a wrong code (`InvalidInput`); throttled; TOTP not on
    /// (`Mfa`); storage failures.
    #[tracing::instrument(name = "regenerate_recovery_codes", skip_all, fields(user_id))]
    pub async fn execute(
        &self,
        access_token: &str,
        code: SecondFactor,
        client: Option<ClientAddress>,
    ) -> Result<Vec<RecoveryCode>, ApplicationError> {
        let (user, _) = caller(&self.guard, self.accounts.as_ref(), access_token).await?;
        let keys = LoginAttemptKeys::new(user.email(), client.as_ref());
        let enrollment = self.factors.confirmed(&user).await?;
        if let Err(retry_after) = self.throttles.admit(&keys, self.factors.clock.now(), self.throttle_policy).await? {
            return Err(ApplicationError::RateLimited { retry_after });
        }
        let Some(proof) = self.factors.proof(&user, &enrollment, &code)? else {
            return Err(ApplicationError::invalid_field("code", WRONG_CODE));
        };
        let (codes, hashes) = recovery_code_set();
        if !self.factors.mfa.replace_recovery_codes(user.id(), &proof, &hashes, self.factors.clock.now()).await? {
            return Err(ApplicationError::invalid_field("code", WRONG_CODE));
        }
        tracing::info!(user_id = %user.id(), "recovery codes regenerated");
        Ok(codes)
    }
}

/// Completes a login that Login answered with `MFA_REQUIRED`.
pub struct CompleteMfaLogin {
    pub users: Arc<dyn UserRepository>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub issuer: Arc<SessionIssuer>,
    pub factors: Arc<SecondFactors>,
}

impl CompleteMfaLogin {
    /// Each code tried is counted on the challenge (five spend it) and on the
    /// same throttle counters as a password, before it is checked; only a
    /// completed login clears those counters.
    ///
    /// # Errors
    /// `InvalidMfaChallenge` for an unknown, expired, spent or exhausted
    /// challenge; `InvalidSecondFactor` for a wrong, replayed or used code;
    /// `RateLimited`; `EmailNotVerified`/`AccountDisabled`; storage failures.
    #[tracing::instrument(name = "complete_mfa_login", skip_all, fields(user_id))]
    pub async fn execute(
        &self,
        challenge: OpaqueToken,
        code: SecondFactor,
        client: Option<ClientAddress>,
        context: ClientContext,
    ) -> Result<SessionTokens, ApplicationError> {
        let hash = challenge.hash();
        let record = self
            .factors
            .mfa
            .count_challenge_attempt(&hash, CHALLENGE_MAX_ATTEMPTS)
            .await?
            .filter(|record| self.factors.clock.now() < record.expires_at)
            .ok_or(ApplicationError::InvalidMfaChallenge)?;
        tracing::Span::current().record("user_id", tracing::field::display(record.user_id));
        let user = self.users.find_by_id(record.user_id).await?.ok_or(ApplicationError::InvalidMfaChallenge)?;
        let keys = LoginAttemptKeys::new(user.email(), client.as_ref());
        if let Err(retry_after) = self.throttles.admit(&keys, self.factors.clock.now(), self.throttle_policy).await? {
            return Err(ApplicationError::RateLimited { retry_after });
        }
        let enrollment = self.factors.confirmed(&user).await.map_err(|_| ApplicationError::InvalidMfaChallenge)?;
        let refused = |outcome: &str| {
            tracing::info!(user_id = %user.id(), outcome, throttle_key = keys.account.as_str(), "two-factor login refused");
        };
        let Some(proof) = self.factors.proof(&user, &enrollment, &code)? else {
            refused("bad_code");
            return Err(ApplicationError::InvalidSecondFactor);
        };
        let (session, refresh) = self.issuer.login_session(&user, AuthMethods::PasswordAndOtp, context);
        let created = UserEvent::session_created(user.id(), session.family_id, true, session.created_at);
        let device = self.issuer.device_sighting(&user, &session);
        match self
            .factors
            .mfa
            .complete_login(&hash, &proof, &session, record.password_version, &[created.into()], device.as_ref())
            .await?
        {
            MfaLoginCommit::Created => {}
            MfaLoginCommit::ProofSpent => {
                refused("bad_code");
                return Err(ApplicationError::InvalidSecondFactor);
            }
            MfaLoginCommit::ChallengeSpent | MfaLoginCommit::CredentialsChanged => {
                refused("challenge_spent");
                return Err(ApplicationError::InvalidMfaChallenge);
            }
            MfaLoginCommit::Refused(refusal) => return Err(refusal.into()),
        }
        self.throttles.succeeded(&keys, self.factors.clock.now()).await?;
        let method = if matches!(proof, SecondFactorProof::RecoveryCode(_)) { "recovery_code" } else { "totp" };
        tracing::info!(user_id = %user.id(), session_id = %session.id, method, outcome = "success", "user logged in with a second factor");
        self.issuer.tokens_for(user, &session, &refresh)
    }
}
