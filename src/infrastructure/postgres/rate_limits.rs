//! Call budgets shared by every replica: GCRA (the generic cell rate
//! algorithm) in one upsert per check on an unlogged table.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sha2::{Digest, Sha256};

use crate::{
    domain::ports::{RateLimitStore, RepositoryError},
    infrastructure::sea_orm::classify,
};

/// One statement, atomic under concurrency: the row lock of the upsert orders
/// the calls of one budget across replicas. `$2` is the emission interval
/// (a minute over the budget), `$3` the burst tolerance (a minute less one
/// interval, so that a fresh budget allows `per_minute` calls at once). A call
/// is allowed when the theoretical arrival time, brought up to now, is no
/// further ahead than the tolerance; it then moves one interval on. A refused
/// call leaves the time as it was, so refusals cost the caller nothing more.
/// Every SET expression reads the row as it was before the statement.
/// `now()` is the database's clock, the one every replica shares.
const TAKE: &str = "
INSERT INTO rate_limit_buckets AS b (key_hash, theoretical_arrival, last_allowed)
VALUES ($1, now() + make_interval(secs => $2), true)
ON CONFLICT (key_hash) DO UPDATE SET
    last_allowed = GREATEST(b.theoretical_arrival, now()) <= now() + make_interval(secs => $3),
    theoretical_arrival = CASE
        WHEN GREATEST(b.theoretical_arrival, now()) <= now() + make_interval(secs => $3)
            THEN GREATEST(b.theoretical_arrival, now()) + make_interval(secs => $2)
        ELSE b.theoretical_arrival
    END
RETURNING last_allowed, EXTRACT(EPOCH FROM (theoretical_arrival - now()))::float8 AS ahead";

/// Rows whose time has passed are the same as no row; deleted in batches so
/// that no statement holds many row locks. The outer condition is checked
/// again after any row lock was waited for: a row spent meanwhile stays.
const SWEEP: &str = "
DELETE FROM rate_limit_buckets WHERE key_hash IN (
    SELECT key_hash FROM rate_limit_buckets WHERE theoretical_arrival < now() LIMIT $1
) AND theoretical_arrival < now()";

#[derive(Clone)]
pub struct PostgresRateLimits {
    db: DatabaseConnection,
}

impl PostgresRateLimits {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Deletes the rows of budgets back to full, `batch` at a time.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sweep(&self, batch: u64) -> Result<u64, RepositoryError> {
        let mut deleted = 0;
        loop {
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                SWEEP,
                [i64::try_from(batch).unwrap_or(i64::MAX).into()],
            );
            let affected = self.db.execute_raw(statement).await.map_err(classify)?.rows_affected();
            deleted += affected;
            if affected < batch {
                return Ok(deleted);
            }
        }
    }
}

/// The arithmetic of [`TAKE`], for a budget of `per_minute`: the emission
/// interval and the burst tolerance, in seconds. PostgreSQL keeps intervals
/// in microseconds: the tolerance gets one millisecond of slack, so that the
/// rounding of `per_minute - 1` intervals never refuses the last call of a
/// burst.
fn gcra_parameters(per_minute: u32) -> (f64, f64) {
    let interval = 60.0 / f64::from(per_minute.max(1));
    (interval, 60.0 - interval + 0.001)
}

#[async_trait]
impl RateLimitStore for PostgresRateLimits {
    async fn take(&self, key: &str, per_minute: u32) -> Result<Result<(), Duration>, RepositoryError> {
        let (interval, tolerance) = gcra_parameters(per_minute);
        let key_hash = Sha256::digest(key.as_bytes()).to_vec();
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            TAKE,
            [key_hash.into(), interval.into(), tolerance.into()],
        );
        let row = self
            .db
            .query_one_raw(statement)
            .await
            .map_err(classify)?
            .ok_or_else(|| RepositoryError::Unexpected(anyhow::anyhow!("the rate-limit upsert returned no row")))?;
        let allowed: bool = row.try_get("", "last_allowed").map_err(classify)?;
        if allowed {
            return Ok(Ok(()));
        }
        let ahead: f64 = row.try_get("", "ahead").map_err(classify)?;
        Ok(Err(Duration::from_secs_f64((ahead - tolerance).max(0.001))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_of_sixty_a_minute_emits_one_a_second_with_fifty_nine_to_spare() {
        assert_eq!(gcra_parameters(60), (1.0, 59.001));
    }

    #[test]
    fn a_budget_of_one_a_minute_allows_no_burst() {
        assert_eq!(gcra_parameters(1), (60.0, 0.001));
    }
}
