use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Call budgets shared by every replica, on PostgreSQL only (SQLite serves one
/// replica, whose budgets stay in memory). One row per budget in use, keyed by
/// the SHA-256 of the budget's name (it may hold an email address), holding
/// the GCRA's theoretical arrival time: a row whose time has passed is the
/// same as no row, so losing the table costs nothing but a fresh budget.
/// UNLOGGED: no write-ahead log for a counter that is rewritten on every call
/// (PostgreSQL empties it after a crash, and it is not copied to standbys).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNLOGGED TABLE IF NOT EXISTS rate_limit_buckets (
                    key_hash bytea PRIMARY KEY,
                    theoretical_arrival timestamptz NOT NULL,
                    last_allowed boolean NOT NULL
                )",
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS rate_limit_buckets_arrival_idx ON rate_limit_buckets (theoretical_arrival)",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS rate_limit_buckets").await.map(|_| ())
    }
}
