//! What replicas share: call budgets, and word of revocations made elsewhere.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

use std::time::Duration;

/// Call budgets: `per_minute` calls per key per minute, in bursts of up to
/// `per_minute`. In the database one budget is shared by every replica; in
/// memory it is this replica's alone.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Spends one call from `key`'s budget. `Ok(Err(wait))`: the budget is
    /// spent, and a call is allowed again after `wait`.
    ///
    /// # Errors
    /// The store could not answer (the call may or may not have been spent:
    /// a connection can break after the statement ran).
    async fn take(&self, key: &str, per_minute: u32) -> Result<Result<(), Duration>, RepositoryError>;
}

/// What another replica must re-read before it honours a token again: the
/// notice carries no state, so a forged or late notice can only cost a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationNotice {
    /// The user whose account state changed (disabled, deleted, logged out
    /// everywhere, password changed or reset).
    pub user: Option<UserId>,
    /// Sessions that ended.
    pub sessions: Vec<Uuid>,
}

impl RevocationNotice {
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.sessions.is_empty()
    }
}

/// Tells the other replicas about a revocation this one committed.
#[async_trait]
pub trait RevocationBroadcast: Send + Sync {
    /// # Errors
    /// The notice could not be sent: the others learn it from their cache's
    /// time to live instead.
    async fn broadcast(&self, notice: &RevocationNotice) -> Result<(), RepositoryError>;
}

/// One replica alone (SQLite): nobody to tell.
pub struct NoOtherReplicas;

#[async_trait]
impl RevocationBroadcast for NoOtherReplicas {
    async fn broadcast(&self, _notice: &RevocationNotice) -> Result<(), RepositoryError> {
        Ok(())
    }
}

/// Hears the other replicas' revocations.
pub trait RevocationSubscriber: Send + Sync {
    /// Another replica (or this one) committed the revocation in `notice`.
    fn revoked(&self, notice: &RevocationNotice);
    /// Notices may have been missed (the channel dropped and is back): forget
    /// everything cached before now.
    fn missed_notices(&self);
}
