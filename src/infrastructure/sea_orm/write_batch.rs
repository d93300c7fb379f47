//! Writes of one transaction that need nothing back, sent to the database
//! together.
//!
//! sqlx runs every SQLite statement on its connection's own thread: each one
//! is a command sent there and an answer sent back, two thread hand-offs that
//! cost more CPU than the statement itself. A batch goes as one command: sqlx
//! runs a multi-statement query's statements in order, each with its share of
//! the bound values, and stops at the first that fails. PostgreSQL's extended
//! protocol takes one statement per query, so there the batch runs them one
//! after another (each is a round trip either way).
//!
//! Only statements whose answer nobody needs belong here: a batch reports
//! success or the first error and, for whoever asks, the rows all its
//! statements changed together, never what each one did.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryTrait, Statement, Value, Values};

use crate::observability::statements;

/// Statements for one transaction, run in the order pushed.
pub(super) struct WriteBatch {
    backend: DbBackend,
    statements: Vec<Statement>,
}

impl WriteBatch {
    /// An empty batch for `db`'s database.
    pub fn new(db: &impl ConnectionTrait) -> Self {
        Self { backend: db.get_database_backend(), statements: Vec::new() }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Adds a query SeaORM builds (an insert, an upsert, an update).
    pub fn push_query(&mut self, query: &impl QueryTrait) {
        self.statements.push(query.build(self.backend));
    }

    /// Adds a statement written for this batch's database.
    pub fn push(&mut self, statement: Statement) {
        debug_assert_eq!(statement.db_backend, self.backend, "a statement for another database");
        self.statements.push(statement);
    }

    /// Runs the statements inside `txn` (the caller's transaction, which
    /// commits or rolls back what ran).
    ///
    /// # Errors
    /// The first statement that fails; those after it did not run.
    pub async fn run(self, txn: &impl ConnectionTrait) -> Result<(), DbErr> {
        self.run_counting(txn).await.map(|_| ())
    }

    /// [`Self::run`], answering the rows the statements changed, all together.
    ///
    /// # Errors
    /// The first statement that fails; those after it did not run.
    pub async fn run_counting(self, txn: &impl ConnectionTrait) -> Result<u64, DbErr> {
        match self.backend {
            DbBackend::Sqlite if self.statements.len() > 1 => {
                let count = self.statements.len();
                let changed = txn.execute_raw(joined(self.statements)).await?.rows_affected();
                // The connection reports the batch as one statement; the
                // call's count is of statements, so add the rest.
                for _ in 1..count {
                    statements::count_one();
                }
                Ok(changed)
            }
            _ => {
                let mut changed = 0;
                for statement in self.statements {
                    changed += txn.execute_raw(statement).await?.rows_affected();
                }
                Ok(changed)
            }
        }
    }
}

/// One SQLite query of many statements. Its placeholders are positional
/// (`?`), which sqlx fills from one list, statement after statement: the
/// values concatenate in the same order as the SQL.
fn joined(statements: Vec<Statement>) -> Statement {
    let mut sql = String::new();
    let mut values: Vec<Value> = Vec::new();
    for statement in statements {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        if let Some(Values(more)) = statement.values {
            values.extend(more);
        }
    }
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use sea_orm::{Database, DatabaseConnection, TransactionTrait};

    use super::*;

    /// A SQLite database with one table, counting what its connection executes.
    async fn counted_database() -> (DatabaseConnection, Arc<AtomicU32>) {
        let mut db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)").await.unwrap();
        let executed = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&executed);
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        (db, executed)
    }

    fn note(id: i64, body: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO notes (id, body) VALUES (?, ?)",
            [id.into(), body.into()],
        )
    }

    fn batch_of(db: &impl ConnectionTrait, notes: &[(i64, &str)]) -> WriteBatch {
        let mut batch = WriteBatch::new(db);
        for &(id, body) in notes {
            batch.push(note(id, body));
        }
        batch
    }

    async fn bodies(db: &DatabaseConnection) -> Vec<(i64, String)> {
        let rows = db
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT id, body FROM notes ORDER BY id"))
            .await
            .unwrap();
        rows.iter().map(|row| (row.try_get_by_index(0).unwrap(), row.try_get_by_index(1).unwrap())).collect()
    }

    #[tokio::test]
    async fn a_sqlite_batch_is_one_command_that_binds_each_statement_its_own_values() {
        let (db, executed) = counted_database().await;
        let txn = db.begin().await.unwrap();
        let batch = batch_of(&txn, &[(1, "first"), (2, "second"), (3, "third")]);
        assert_eq!(batch.run_counting(&txn).await.unwrap(), 3);
        txn.commit().await.unwrap();

        assert_eq!(executed.load(Ordering::SeqCst), 1);
        let expected = [(1, "first"), (2, "second"), (3, "third")].map(|(id, body)| (id, body.to_owned()));
        assert_eq!(bodies(&db).await, expected);
    }

    #[tokio::test]
    async fn a_failing_statement_stops_the_batch_and_surfaces_as_the_error_it_is() {
        let (db, _) = counted_database().await;
        let txn = db.begin().await.unwrap();
        let batch = batch_of(&txn, &[(1, "taken"), (2, "taken"), (3, "never run")]);
        let error = batch.run(&txn).await.unwrap_err();
        assert!(super::super::errors::is_unique_violation(&error), "{error}");
        // The statements after the failure did not run; the one before did,
        // and leaves with the transaction the caller rolls back.
        let seen = txn
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT id FROM notes ORDER BY id"))
            .await
            .unwrap();
        let ids: Vec<i64> = seen.iter().map(|row| row.try_get_by_index(0).unwrap()).collect();
        assert_eq!(ids, [1]);
        txn.rollback().await.unwrap();
        assert!(bodies(&db).await.is_empty());
    }

    #[tokio::test]
    async fn a_batch_of_one_or_none_runs_as_it_would_alone() {
        let (db, executed) = counted_database().await;
        WriteBatch::new(&db).run(&db).await.unwrap();
        assert_eq!(executed.load(Ordering::SeqCst), 0);
        batch_of(&db, &[(7, "alone")]).run(&db).await.unwrap();
        assert_eq!(executed.load(Ordering::SeqCst), 1);
        assert_eq!(bodies(&db).await, [(7, "alone".to_owned())]);
    }

    #[tokio::test]
    async fn a_batch_counts_every_statement_toward_the_call() {
        let (db, _) = counted_database().await;
        // The test's connection has its own callback: count what the batch adds.
        let ((), added) = statements::counted(async {
            batch_of(&db, &[(1, "a"), (2, "b"), (3, "c")]).run(&db).await.unwrap();
        })
        .await;
        assert_eq!(added, 2);
    }
}
