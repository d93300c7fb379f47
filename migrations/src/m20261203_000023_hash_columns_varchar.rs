use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns looked up by a hash, as `varchar(64)` instead of `char(64)`, on
/// PostgreSQL. The service binds the hash as `text`, and PostgreSQL compares a
/// `character` column with `text` by casting the column, which no index on it
/// serves: every refresh, single-use-token, throttle, recovery-code, challenge
/// and device lookup was a sequential scan, slower with every row. A `varchar`
/// column compares with `text` as it is, through its index. The hashes are 64
/// hex digits, so no value changes. Each `ALTER` rewrites its table and its
/// indexes under an exclusive lock: on a large `sessions` table, run the
/// migration when a pause of that length is acceptable. SQLite has no such
/// types to change.
const COLUMNS: [(&str, &str); 6] = [
    ("sessions", "token_hash"),
    ("single_use_tokens", "token_hash"),
    ("login_throttles", "email_hash"),
    ("recovery_codes", "code_hash"),
    ("mfa_challenges", "token_hash"),
    ("known_devices", "fingerprint"),
];

async fn retype(manager: &SchemaManager<'_>, to: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    for (table, column) in COLUMNS {
        let sql = format!("ALTER TABLE {table} ALTER COLUMN {column} TYPE {to}");
        manager.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        retype(manager, "varchar(64)").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        retype(manager, "char(64)").await
    }
}
