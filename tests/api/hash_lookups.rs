//! On PostgreSQL a `character(n)` column compared with a `text` parameter (how
//! the service binds every hash) is cast to `text`, and no index on the column
//! serves that comparison: each lookup becomes a sequential scan that slows
//! with every row. Refreshes ran at a third of their rate once the sessions
//! table had grown. PostgreSQL-only by nature: SQLite has no such types.

use identity::infrastructure::sea_orm::{DatabaseSettings, connect, migrate};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use testkit::{Backend, TestDatabase};

/// Every column the service looks rows up by a hash in.
const HASH_LOOKUPS: [(&str, &str); 6] = [
    ("sessions", "token_hash"),
    ("single_use_tokens", "token_hash"),
    ("login_throttles", "email_hash"),
    ("recovery_codes", "code_hash"),
    ("mfa_challenges", "token_hash"),
    ("known_devices", "fingerprint"),
];

async fn migrated_postgres() -> Option<(TestDatabase, DatabaseConnection)> {
    let database = TestDatabase::for_test(Backend::Postgres).await?;
    let settings = DatabaseSettings {
        url: database.url().into(),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
        auto_migrate: false,
    };
    let db = connect(&settings).await.unwrap();
    migrate(&db).await.unwrap();
    Some((database, db))
}

#[tokio::test]
async fn the_postgresql_schema_has_no_fixed_length_character_columns() {
    let Some((_database, db)) = migrated_postgres().await else { return };
    let sql = "SELECT table_name || '.' || column_name AS name FROM information_schema.columns \
               WHERE table_schema = current_schema() AND data_type = 'character' ORDER BY 1";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    let names: Vec<String> = rows.iter().map(|row| row.try_get("", "name").unwrap()).collect();
    assert!(names.is_empty(), "character(n) columns, which a text parameter cannot look up by index: {names:?}");
}

#[tokio::test]
async fn every_lookup_by_a_hash_bound_as_text_uses_an_index_on_postgresql() {
    let Some((_database, db)) = migrated_postgres().await else { return };
    // One connection, on which only a comparison no index can serve is still
    // planned as a scan.
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL enable_seqscan = off").await.unwrap();
    for (table, column) in HASH_LOOKUPS {
        let sql = format!("EXPLAIN SELECT * FROM {table} WHERE {column} = 'a'::text");
        let plan = txn.query_all_raw(Statement::from_string(txn.get_database_backend(), sql)).await.unwrap();
        let plan: Vec<String> = plan.iter().map(|row| row.try_get_by_index(0).unwrap()).collect();
        assert!(!plan.join("\n").contains("Seq Scan"), "{table}.{column} is scanned:\n{}", plan.join("\n"));
    }
}
