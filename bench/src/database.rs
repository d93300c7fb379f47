//! The bench's database: a fresh SQLite file or PostgreSQL database per run,
//! removed afterwards.

use std::path::PathBuf;

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};

use crate::options::Backend;

pub struct BenchDatabase {
    pub url: String,
    kind: Kind,
}

enum Kind {
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Somebody else's (`--target` with `--database-url`): never dropped.
    External,
}

impl BenchDatabase {
    /// # Errors
    /// PostgreSQL is unreachable or refuses to create the database.
    pub async fn create(backend: Backend, run_id: &str, postgres_url: &str) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("identity-bench-{run_id}.db"));
                Ok(Self { url: format!("sqlite://{}?mode=rwc", path.display()), kind: Kind::Sqlite { path } })
            }
            Backend::Postgres => {
                let name = format!("identity_bench_{run_id}");
                let admin = Database::connect(postgres_url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {postgres_url} (--postgres-url)"))?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                let _ = admin.close().await;
                let (base, _) = postgres_url.rsplit_once('/').context("--postgres-url must end with /<database>")?;
                Ok(Self {
                    url: format!("{base}/{name}"),
                    kind: Kind::Postgres { admin_url: postgres_url.to_owned(), name },
                })
            }
        }
    }

    pub fn external(url: String) -> Self {
        Self { url, kind: Kind::External }
    }

    /// Marks every user waiting for verification as verified, as following the
    /// emailed link would: login needs verified users, and reading hundreds of
    /// links out of emails would measure the bench rather than the server.
    ///
    /// # Errors
    /// The database refused.
    pub async fn verify_all_users(&self) -> anyhow::Result<u64> {
        let db = Database::connect(self.url.as_str()).await.context("connecting to the bench database")?;
        let result = db
            .execute_unprepared(
                "UPDATE users SET status = 'active', verified_at = created_at WHERE status = 'pending_verification'",
            )
            .await
            .context("marking users verified");
        let _ = db.close().await;
        Ok(result?.rows_affected())
    }

    pub async fn remove(self) {
        match self.kind {
            Kind::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Kind::Postgres { admin_url, name } => {
                let dropped = async {
                    let admin = Database::connect(admin_url.as_str()).await?;
                    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
                    admin.close().await
                };
                if let Err(error) = dropped.await {
                    eprintln!("could not drop database {name}: {error}");
                }
            }
            Kind::External => {}
        }
    }
}
