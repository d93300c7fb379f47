//! What the integration tests (`tests/`) and the benchmark (`bench/`) share: a
//! throwaway database on either backend, a free local port, and the macro that
//! declares a test once per backend.
//!
//! It knows nothing of the service itself, so that the service can take it as a
//! dev-dependency without a cycle in the build.

use std::{net::TcpListener, path::PathBuf};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};

/// Where the server under test stores its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A fresh SQLite file or PostgreSQL database, removed when dropped.
pub enum TestDatabase {
    Sqlite { path: PathBuf },
    Postgres { admin_url: String, name: String, url: String },
}

impl TestDatabase {
    /// A database for one test, named `identity_test_<uuid>` (`.ci/run` drops
    /// leftovers of interrupted runs by that prefix). PostgreSQL is the one at
    /// `TEST_DATABASE_URL`; when it is unreachable the test is skipped (`None`)
    /// locally and fails when `CI` is set.
    ///
    /// # Panics
    /// PostgreSQL is unreachable while `CI` is set, or refuses to create the
    /// database: both are failures of the test run.
    pub async fn for_test(backend: Backend) -> Option<Self> {
        let admin_url = postgres_admin_url();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match Self::create_or_tell(backend, "test", &unique, &admin_url).await {
            Ok(database) => Some(database),
            // Locally, no PostgreSQL means skip; in CI it must fail the run.
            Err(Failure::Unreachable(error)) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: {error:#}");
                None
            }
            Err(Failure::Unreachable(error)) => panic!("{error:#} (and CI is set)"),
            Err(Failure::Refused(error)) => panic!("{error:#}"),
        }
    }

    /// A database named `identity_<purpose>_<id>` (a file
    /// `identity-<purpose>-<id>.db` in the temporary directory for SQLite),
    /// created through the PostgreSQL server at `admin_url`.
    ///
    /// # Errors
    /// `admin_url` does not end with `/<database>`, PostgreSQL is unreachable,
    /// or it refuses to create the database.
    pub async fn create(backend: Backend, purpose: &str, id: &str, admin_url: &str) -> anyhow::Result<Self> {
        Self::create_or_tell(backend, purpose, id, admin_url)
            .await
            .map_err(|(Failure::Unreachable(error) | Failure::Refused(error))| error)
    }

    async fn create_or_tell(backend: Backend, purpose: &str, id: &str, admin_url: &str) -> Result<Self, Failure> {
        match backend {
            Backend::Sqlite => {
                Ok(Self::Sqlite { path: std::env::temp_dir().join(format!("identity-{purpose}-{id}.db")) })
            }
            Backend::Postgres => {
                let name = format!("identity_{purpose}_{id}");
                // Checked before anything is created, so that a bad URL leaves nothing behind.
                let (base, _) = admin_url
                    .rsplit_once('/')
                    .with_context(|| format!("{admin_url} must end with /<database>"))
                    .map_err(Failure::Refused)?;
                let url = format!("{base}/{name}");
                let admin = Database::connect(admin_url)
                    .await
                    .with_context(|| format!("PostgreSQL unreachable at {admin_url}"))
                    .map_err(Failure::Unreachable)?;
                let created = admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .with_context(|| format!("creating database {name}"));
                let _ = admin.close().await;
                created.map_err(Failure::Refused)?;
                Ok(Self::Postgres { admin_url: admin_url.to_owned(), name, url })
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}?mode=rwc", path.display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    /// Runs SQL as the administrator on the test database's server.
    ///
    /// # Panics
    /// On SQLite, or when the server refuses: a test that needs this cannot go on.
    pub async fn admin_execute(&self, sql: &str) {
        let Self::Postgres { admin_url, .. } = self else { panic!("PostgreSQL only") };
        let admin = Database::connect(admin_url.as_str()).await.unwrap();
        admin.execute_unprepared(sql).await.unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            Self::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Self::Postgres { admin_url, name, .. } => {
                // Drop cannot await; a short-lived thread with its own runtime can
                // (also from inside another runtime, which a blocking call could not).
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                        eprintln!("could not drop database {name}: no runtime");
                        return;
                    };
                    let dropped = runtime.block_on(async {
                        let admin = Database::connect(admin_url.as_str()).await?;
                        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
                        admin.close().await
                    });
                    if let Err(error) = dropped {
                        eprintln!("could not drop database {name}: {error}");
                    }
                })
                .join();
            }
        }
    }
}

/// Why a database could not be had: a missing server may skip a local test run,
/// anything else fails it.
enum Failure {
    Unreachable(anyhow::Error),
    Refused(anyhow::Error),
}

/// The PostgreSQL server the tests create their databases in.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A local port nobody listens on right now: bound then released, for a
/// service that is "down" now or a child process that binds it a moment later.
///
/// # Errors
/// No port is free.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Declares each test once per backend, as `name::sqlite` and `name::postgres`.
///
/// - `on_both_databases!(a, b)`: each test is an `async fn(Backend)`.
/// - `on_both_databases!(builder = race_app; a, b)`: each test is an
///   `async fn(App)`, given what `race_app(backend).await` returns when that is
///   `Some` (a builder returns `None` to skip a backend that is unavailable
///   locally).
/// - `on_both_databases!(builder = spawn_app_with(behind_a_proxy); a, b)`: the
///   same, calling `spawn_app_with(backend, behind_a_proxy)`.
///
/// The builder and its arguments are named as in the invoking module.
#[macro_export]
macro_rules! on_both_databases {
    (@one $builder:ident ($($argument:ident),* $(,)?) $name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = super::$builder($crate::Backend::Sqlite $(, super::$argument)*).await {
                    super::$name(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = super::$builder($crate::Backend::Postgres $(, super::$argument)*).await {
                    super::$name(app).await;
                }
            }
        }
    };
    (builder = $builder:ident; $($name:ident),+ $(,)?) => {
        $($crate::on_both_databases!(@one $builder () $name);)+
    };
    // The arguments travel as one token tree: a group captured outside the
    // repetition over the names cannot be repeated inside it.
    (builder = $builder:ident $arguments:tt; $($name:ident),+ $(,)?) => {
        $($crate::on_both_databases!(@one $builder $arguments $name);)+
    };
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await;
                }
            }
        )+
    };
}
