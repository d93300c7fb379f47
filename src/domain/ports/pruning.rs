//! Pruning what no longer serves a purpose.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

/// How many rows one pruning run deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub sessions: u64,
    pub login_throttles: u64,
    pub verification_tokens: u64,
    pub password_reset_tokens: u64,
    pub pending_users: u64,
    /// Two-factor login challenges past their five minutes.
    pub mfa_challenges: u64,
    /// TOTP enrolments begun and never confirmed before they expired.
    pub pending_enrolments: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.sessions
            + self.login_throttles
            + self.verification_tokens
            + self.password_reset_tokens
            + self.pending_users
            + self.mfa_challenges
            + self.pending_enrolments
    }
}

/// The cut-offs of one pruning run: rows settled before them are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCutoffs {
    /// Sessions that expired, or were revoked or rotated, before this.
    pub sessions: OffsetDateTime,
    /// Throttle rows whose last failure is older than this and that are not locked at `now`.
    pub login_throttles: OffsetDateTime,
    /// Throttle rows that mark an address the account logged in from (which
    /// the account-wide lock spares) stay until their last success is older than this.
    pub known_addresses: OffsetDateTime,
    /// Single-use tokens spent or expired before this.
    pub single_use_tokens: OffsetDateTime,
    /// Users still pending verification whose every verification token expired
    /// before this (and who signed up before it).
    pub pending_users: OffsetDateTime,
    pub now: OffsetDateTime,
}

/// Deletes what no longer serves a purpose, a bounded batch at a time.
#[async_trait]
pub trait Pruner: Send + Sync {
    /// Deletes at most `batch` rows of each kind, with one `user.deleted` event
    /// per pending user deleted (written with the deletion).
    ///
    /// # Errors
    /// Storage failures only.
    async fn prune(&self, cutoffs: &PruneCutoffs, batch: u64) -> Result<PruneReport, RepositoryError>;
}
