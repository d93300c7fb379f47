//! Two-factor login: TOTP secrets (encrypted at rest), recovery codes (hashed),
//! and the challenges between a right password and a right code.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;
use crate::domain::{LoginRefusal as Refusal, TotpCode, TotpSecret};

/// Encrypts TOTP secrets for storage: they must be readable to check codes,
/// so they cannot be hashed like passwords.
pub trait SecretCipher: Send + Sync {
    /// Binds the ciphertext to `user_id` (as associated data): a secret copied
    /// onto another user's row does not decrypt there.
    ///
    /// # Errors
    /// Only a broken random source.
    fn encrypt(&self, secret: &TotpSecret, user_id: UserId) -> anyhow::Result<String>;

    /// Tries the current key, then the previous one (key rotation).
    ///
    /// # Errors
    /// A ciphertext that no configured key opens, or that is malformed.
    fn decrypt(&self, stored: &str, user_id: UserId) -> anyhow::Result<TotpSecret>;
}

/// RFC 6238 TOTP (SHA-1, 6 digits, 30-second steps).
pub trait TotpAlgorithm: Send + Sync {
    /// The first of `steps` whose code is `code`, compared in constant time.
    ///
    /// # Errors
    /// A secret the algorithm refuses (too short).
    fn matching_step(&self, secret: &TotpSecret, code: &TotpCode, steps: &[i64]) -> anyhow::Result<Option<i64>>;

    /// The secret in base32, as authenticator apps take it when typed in.
    fn encoded_secret(&self, secret: &TotpSecret) -> secrecy::SecretString;

    /// `otpauth://totp/...` for a QR code.
    ///
    /// # Errors
    /// A secret or label the algorithm refuses.
    fn provisioning_uri(
        &self,
        secret: &TotpSecret,
        issuer: &str,
        account: &str,
    ) -> anyhow::Result<secrecy::SecretString>;
}

/// A user's TOTP enrolment as stored.
#[derive(Debug, Clone)]
pub struct TotpEnrollment {
    /// What [`SecretCipher::encrypt`] made of the secret.
    pub ciphertext: String,
    pub is_confirmed: bool,
    /// A pending enrolment cannot be confirmed after this.
    pub pending_expires_at: OffsetDateTime,
    /// The newest step a code was accepted for.
    pub last_step: Option<i64>,
}

/// A login challenge to store: its digest only.
#[derive(Debug, Clone)]
pub struct NewMfaChallenge {
    pub user_id: UserId,
    pub token_hash: TokenHash,
    /// The password version the login verified: a password changed meanwhile
    /// spends the challenge.
    pub password_version: i32,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A stored challenge as read back by [`MfaRepository::count_challenge_attempt`].
#[derive(Debug, Clone)]
pub struct MfaChallengeRecord {
    pub user_id: UserId,
    pub password_version: i32,
    pub expires_at: OffsetDateTime,
}

/// A second factor that checked out, to be spent in the same transaction as
/// whatever it authorises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorProof {
    /// The TOTP step the code matched: accepted only if newer than the last one.
    TotpStep(i64),
    /// The digest of an unused recovery code.
    RecoveryCode(TokenHash),
}

/// How completing a two-factor login went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaLoginCommit {
    Created,
    /// The challenge was spent meanwhile (a concurrent completion won).
    ChallengeSpent,
    /// The code's step was accepted already, or the recovery code used.
    ProofSpent,
    /// The password changed (or the user was deleted, or TOTP turned off)
    /// since the password was checked.
    CredentialsChanged,
    Refused(Refusal),
}

/// TOTP enrolments, recovery codes and login challenges. Every change that
/// spends a second factor does it with a conditional update (a step only if
/// newer than the last accepted, a recovery code only if unused), so that of
/// concurrent uses exactly one wins.
#[async_trait]
pub trait MfaRepository: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn find_totp(&self, user_id: UserId) -> Result<Option<TotpEnrollment>, RepositoryError>;

    /// Stores a pending secret in place of any pending one; `false` when the
    /// user has TOTP confirmed already.
    ///
    /// # Errors
    /// Storage failures only.
    async fn save_pending_totp(
        &self,
        user_id: UserId,
        ciphertext: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, RepositoryError>;

    /// Confirms the pending secret that is still `ciphertext` (not replaced
    /// meanwhile) and unexpired, accepts `step`, stores the recovery codes, turns
    /// TOTP on for logins and writes the notice, atomically; `false` when it no
    /// longer applies.
    ///
    /// # Errors
    /// Storage failures only.
    async fn confirm_totp(
        &self,
        user_id: UserId,
        ciphertext: &str,
        step: i64,
        recovery_codes: &[TokenHash],
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;

    /// Spends the proof and replaces every recovery code, atomically; `false`
    /// when the proof was spent meanwhile or TOTP is off.
    ///
    /// # Errors
    /// Storage failures only.
    async fn replace_recovery_codes(
        &self,
        user_id: UserId,
        proof: &SecondFactorProof,
        recovery_codes: &[TokenHash],
        now: OffsetDateTime,
    ) -> Result<bool, RepositoryError>;

    /// Spends the proof (when given; an operator's reset gives none), removes
    /// the secret, the recovery codes and the open challenges, turns TOTP off
    /// for logins and writes the event (when given), atomically; `false` when the
    /// proof was spent meanwhile or there was nothing to remove.
    ///
    /// # Errors
    /// Storage failures only.
    async fn disable_totp(
        &self,
        user_id: UserId,
        proof: Option<&SecondFactorProof>,
        now: OffsetDateTime,
        event: Option<&DomainEvent>,
    ) -> Result<bool, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn insert_challenge(&self, challenge: &NewMfaChallenge) -> Result<(), RepositoryError>;

    /// Counts one more code tried with a challenge, before the code is
    /// checked, and returns the challenge unless it is unknown, spent, or was
    /// tried `max_attempts` times already.
    ///
    /// # Errors
    /// Storage failures only.
    async fn count_challenge_attempt(
        &self,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<MfaChallengeRecord>, RepositoryError>;

    /// Under the user's row lock: checks that the user may still log in with
    /// the password version the challenge verified and still has TOTP on,
    /// spends the challenge and the proof, and stores the session with the
    /// events (`session.created`) and remembers its `device`, atomically.
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_login(
        &self,
        challenge: &TokenHash,
        proof: &SecondFactorProof,
        session: &NewSession,
        verified_version: i32,
        events: &[DomainEvent],
        device: Option<&DeviceSighting>,
    ) -> Result<MfaLoginCommit, RepositoryError>;
}
