use std::{sync::Arc, time::Duration};

use super::ApplicationError;
use crate::domain::ports::{Clock, PruneCutoffs, PruneReport, Pruner};

/// How long settled rows stay before pruning: long enough for the resend caps
/// (an hour of history), for "this link was already used" answers the day after,
/// and for an operator looking into yesterday.
pub const SETTLED_GRACE: time::Duration = time::Duration::DAY;

/// How long an address the account logged in from stays known without a new
/// login from it (the account-wide login lock spares known addresses).
pub const KNOWN_ADDRESS_RETENTION: time::Duration = time::Duration::days(90);

/// Deletes expired sessions, stale login throttles, spent and expired
/// single-use tokens and abandoned sign-ups, so that none of these tables grows
/// without bound (unknown addresses tried at login each leave a throttle row).
pub struct PruneStaleRecords {
    pub pruner: Arc<dyn Pruner>,
    pub clock: Arc<dyn Clock>,
    /// A user still pending verification this long after their last
    /// verification link expired is deleted (`IDENTITY_PENDING_SIGNUP_RETENTION`).
    pub pending_signup_retention: Duration,
    /// Rows of one kind per delete statement.
    pub batch_size: u64,
    /// Batches per run at most, so that one run is bounded however far behind it is.
    pub max_batches: u32,
}

impl PruneStaleRecords {
    pub fn cutoffs(&self) -> PruneCutoffs {
        let now = self.clock.now();
        let settled = now - SETTLED_GRACE;
        PruneCutoffs {
            sessions: settled,
            login_throttles: settled,
            known_addresses: now - KNOWN_ADDRESS_RETENTION,
            single_use_tokens: settled,
            pending_users: now - self.pending_signup_retention,
            now,
        }
    }

    /// One run: batches until none is full, or `max_batches`.
    ///
    /// # Errors
    /// Storage failures (what was deleted before stays deleted).
    #[tracing::instrument(name = "prune_stale_records", skip_all)]
    pub async fn execute(&self) -> Result<PruneReport, ApplicationError> {
        let cutoffs = self.cutoffs();
        let mut total = PruneReport::default();
        for _ in 0..self.max_batches {
            let batch = self.pruner.prune(&cutoffs, self.batch_size).await?;
            total.sessions += batch.sessions;
            total.login_throttles += batch.login_throttles;
            total.verification_tokens += batch.verification_tokens;
            total.password_reset_tokens += batch.password_reset_tokens;
            total.pending_users += batch.pending_users;
            total.mfa_challenges += batch.mfa_challenges;
            total.pending_enrolments += batch.pending_enrolments;
            let is_full = [
                batch.sessions,
                batch.login_throttles,
                batch.verification_tokens,
                batch.password_reset_tokens,
                batch.pending_users,
                batch.mfa_challenges,
                batch.pending_enrolments,
            ]
            .iter()
            .any(|count| *count >= self.batch_size);
            if !is_full {
                break;
            }
        }
        if total.total() > 0 {
            tracing::info!(
                sessions = total.sessions,
                login_throttles = total.login_throttles,
                verification_tokens = total.verification_tokens,
                password_reset_tokens = total.password_reset_tokens,
                pending_users = total.pending_users,
                mfa_challenges = total.mfa_challenges,
                pending_enrolments = total.pending_enrolments,
                "pruned stale records"
            );
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::{OffsetDateTime, macros::datetime};

    use crate::domain::ports::RepositoryError;

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> OffsetDateTime {
            datetime!(2026-01-10 0:00 UTC)
        }
    }

    /// Has `backlog` throttle rows to delete; records the batches asked for.
    struct Backlog(Mutex<(u64, u32)>);
    #[async_trait]
    impl Pruner for Backlog {
        async fn prune(&self, _: &PruneCutoffs, batch: u64) -> Result<PruneReport, RepositoryError> {
            let mut state = self.0.lock().unwrap();
            let deleted = state.0.min(batch);
            state.0 -= deleted;
            state.1 += 1;
            Ok(PruneReport { login_throttles: deleted, ..PruneReport::default() })
        }
    }

    fn task(backlog: u64) -> (PruneStaleRecords, Arc<Backlog>) {
        let pruner = Arc::new(Backlog(Mutex::new((backlog, 0))));
        let task = PruneStaleRecords {
            pruner: Arc::clone(&pruner) as Arc<dyn Pruner>,
            clock: Arc::new(FixedClock),
            pending_signup_retention: Duration::from_secs(7 * 86_400),
            batch_size: 100,
            max_batches: 5,
        };
        (task, pruner)
    }

    #[tokio::test]
    async fn a_run_stops_at_the_first_batch_that_is_not_full() {
        let (task, pruner) = task(250);
        assert_eq!(task.execute().await.unwrap().login_throttles, 250);
        assert_eq!(pruner.0.lock().unwrap().1, 3);
    }

    #[tokio::test]
    async fn a_run_is_bounded_however_large_the_backlog() {
        let (task, pruner) = task(10_000);
        assert_eq!(task.execute().await.unwrap().login_throttles, 500);
        assert_eq!(pruner.0.lock().unwrap().1, 5);
    }

    #[test]
    fn settled_rows_get_a_day_and_abandoned_sign_ups_the_retention() {
        let (task, _) = task(0);
        let cutoffs = task.cutoffs();
        assert_eq!(cutoffs.sessions, datetime!(2026-01-09 0:00 UTC));
        assert_eq!(cutoffs.login_throttles, datetime!(2026-01-09 0:00 UTC));
        assert_eq!(cutoffs.single_use_tokens, datetime!(2026-01-09 0:00 UTC));
        assert_eq!(cutoffs.pending_users, datetime!(2026-01-03 0:00 UTC));
    }
}
