//! The migration that merged the verification and reset token tables into
//! `single_use_tokens` keeps every row with its purpose, and its `down` puts
//! them back.

use std::time::Duration;

use identity::infrastructure::sea_orm::{DatabaseSettings, connect};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

const AT: &str = "'2026-12-01 12:00:00+00:00'";

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `(purpose, token_hash, attempts, is_spent)` of every merged row, by hash.
async fn merged(db: &DatabaseConnection) -> Vec<(String, String, i32, bool)> {
    let sql = "SELECT purpose, token_hash, attempts, spent_at IS NOT NULL AS spent FROM single_use_tokens ORDER BY token_hash";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
                row.try_get_by_index(2).unwrap(),
                row.try_get_by_index(3).unwrap(),
            )
        })
        .collect()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn merging_the_token_tables_keeps_every_row_with_its_purpose_and_down_splits_them_again() {
    let settings = DatabaseSettings {
        url: "sqlite::memory:".to_owned().into(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
        auto_migrate: false,
    };
    let db = connect(&settings).await.unwrap();
    let migrations = Migrator::migrations();
    let merge = migrations.iter().position(|m| m.name() == "m20261202_000011_single_use_tokens").unwrap();
    Migrator::up(&db, Some(u32::try_from(merge).unwrap())).await.unwrap();
    let (verify, reset) = ("a".repeat(64), "b".repeat(64));
    execute(
        &db,
        &format!(
            "INSERT INTO users (id, email, password_hash, status, created_at, updated_at) \
             VALUES ('u1', 'ada@example.com', 'x', 'active', {AT}, {AT})"
        ),
    )
    .await;
    execute(
        &db,
        &format!(
            "INSERT INTO verification_tokens (id, user_id, token_hash, created_at, expires_at, spent_at) \
             VALUES ('t1', 'u1', '{verify}', {AT}, {AT}, NULL)"
        ),
    )
    .await;
    execute(
        &db,
        &format!(
            "INSERT INTO password_reset_tokens (id, user_id, token_hash, created_at, expires_at, spent_at, attempts) \
             VALUES ('t2', 'u1', '{reset}', {AT}, {AT}, {AT}, 3)"
        ),
    )
    .await;

    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        merged(&db).await,
        [("email_verification".to_owned(), verify, 0, false), ("password_reset".to_owned(), reset, 3, true)]
    );
    let old_tables =
        "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('verification_tokens', 'password_reset_tokens')";
    assert_eq!(count(&db, old_tables).await, 0);

    // Back to just before the merge, undoing the later migrations on the way.
    Migrator::down(&db, Some(u32::try_from(migrations.len() - merge).unwrap())).await.unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM verification_tokens WHERE spent_at IS NULL").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM password_reset_tokens WHERE attempts = 3").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'single_use_tokens'").await, 0);
}
