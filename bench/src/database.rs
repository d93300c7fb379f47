//! The bench's database: a fresh SQLite file or PostgreSQL database per run
//! (testkit's, dropped with it), or the one of a server given with `--target`.

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};
use testkit::{Backend, TestDatabase};

pub enum BenchDatabase {
    Own(TestDatabase),
    /// Somebody else's (`--target` with `--database-url`): never dropped.
    External(String),
}

impl BenchDatabase {
    /// A database named after the run, `identity_bench_<run id>`.
    ///
    /// # Errors
    /// PostgreSQL is unreachable or refuses to create the database.
    pub async fn create(backend: Backend, run_id: &str, postgres_url: &str) -> anyhow::Result<Self> {
        let database = TestDatabase::create(backend, "bench", run_id, postgres_url).await.context("--postgres-url")?;
        Ok(Self::Own(database))
    }

    pub fn url(&self) -> String {
        match self {
            Self::Own(database) => database.url(),
            Self::External(url) => url.clone(),
        }
    }

    /// Marks every user waiting for verification as verified, as following the
    /// emailed link would: login needs verified users, and reading hundreds of
    /// links out of emails would measure the bench rather than the server.
    ///
    /// # Errors
    /// The database refused.
    pub async fn verify_all_users(&self) -> anyhow::Result<u64> {
        let db = Database::connect(self.url()).await.context("connecting to the bench database")?;
        let result = db
            .execute_unprepared(
                "UPDATE users SET status = 'active', verified_at = created_at WHERE status = 'pending_verification'",
            )
            .await
            .context("marking users verified");
        let _ = db.close().await;
        Ok(result?.rows_affected())
    }
}
