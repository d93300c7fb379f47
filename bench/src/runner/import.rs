//! import-django: `identity-server import-django` from a Django-shaped SQLite
//! database (the seed's `user` table, PBKDF2 hashes as Django stores them)
//! into a fresh service database, against a ceiling measured in the same run
//! on the same databases: the same rows read from the source and written to a
//! scratch table of the same columns in batches of the same size, with no
//! checks. The ratio is what parsing, canonicalising and the import's
//! bookkeeping cost beyond moving the rows. The floor: 5,000 rows/s
//! from SQLite into SQLite.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait, Value};

use super::{Bench, Row};
use crate::{
    database::BenchDatabase,
    options::{Backend, Scenario},
    processes::Process,
};

/// The import's batch size, so that the ceiling pays the same number of round
/// trips and commits.
#[allow(clippy::cast_possible_truncation)]
const BATCH: usize = identity::import::BATCH_SIZE as usize;
/// What the issue asks of SQLite into SQLite.
const FLOOR_ROWS_PER_SECOND: f64 = 5_000.0;
/// Django's PBKDF2 at its default cost, stored as is: the import never
/// verifies a hash, so every row may share one.
const DJANGO_HASH: &str = "pbkdf2_sha256$720000$c2FsdHNhbHRzYWx0$3wIPrJgFtuDWqhSp2Vbu1yCeLQE84A4j9WoJYQVr0kE=";

impl Bench {
    pub(super) async fn import_django(
        &mut self,
        backend: Backend,
        database: Option<&BenchDatabase>,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::ImportDjango;
        let rows = self.options.requests(scenario);
        let database = database.context("import-django needs a database of its own (not --target)")?;
        let source_path = self.dir.join(format!("django-{}.sqlite3", backend.name()));
        let source_url = format!("sqlite://{}?mode=rwc", source_path.display());
        let source = Database::connect(&source_url).await.context("creating the Django database")?;
        let seeding = Instant::now();
        seed_django_users(&source, rows).await?;
        println!("== {} · {} · {rows} users ==", scenario.name(), self.backend_name(backend));
        println!("  source seeded in {:.1} s", seeding.elapsed().as_secs_f64());

        let ceiling = copy_rows(&source, &database.url()).await?;
        let (server, _) = self.binaries.as_ref().context("identity-server was not found")?;
        let env = vec![("IDENTITY_DATABASE_URL".to_owned(), database.url())];
        let source_arg = format!("sqlite://{}", source_path.display());
        let args = ["import-django", "--source", source_arg.as_str(), "--table", "user"];
        let mut runs = Vec::new();
        for run in ["first", "second"] {
            let log = self.dir.join(format!("import-{}-{run}.log", backend.name()));
            let started = Instant::now();
            Process::spawn("identity-server import-django", server, &args, &env, log.clone())?.wait_exit().await?;
            let took = started.elapsed();
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let summary = output.lines().rev().find(|line| line.starts_with("imported ")).unwrap_or("no summary");
            println!("  {run} run: {:.2} s, {:.0} rows/s — {summary}", took.as_secs_f64(), per_second(rows, took));
            runs.push((took, summary.to_owned()));
        }
        let (took, summary) = &runs[0];
        if !summary.starts_with(&format!("imported {rows},")) {
            bail!("the first run did not import every row: {summary}");
        }
        let rate = per_second(rows, *took);
        let ceiling_rate = per_second(rows, ceiling);
        let floor = if backend == Backend::Sqlite {
            format!(
                ", floor {FLOOR_ROWS_PER_SECOND:.0}/s {}",
                if rate >= FLOOR_ROWS_PER_SECOND { "met" } else { "MISSED" }
            )
        } else {
            String::new()
        };
        println!(
            "  ceiling (plain batched copy): {:.2} s, {ceiling_rate:.0} rows/s; import = {:.0}% of it{floor}\n",
            ceiling.as_secs_f64(),
            100.0 * rate / ceiling_rate
        );
        self.rows.push(Row {
            scenario: scenario.name(),
            backend: self.backend_name(backend),
            throughput: format!("{rate:.0} rows"),
            versus: format!("{:.0}% of a plain copy ({ceiling_rate:.0}/s){floor}", 100.0 * rate / ceiling_rate),
            p50: "–".to_owned(),
            p99: "–".to_owned(),
            errors: String::new(),
            cpu_per_call: "–".to_owned(),
            server: None,
        });
        Ok(())
    }
}

fn per_second(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(1e-9)
}

/// The seed's custom user model as Django creates it on SQLite (UUIDs as 32
/// hex digits), with `rows` verified users.
async fn seed_django_users(db: &DatabaseConnection, rows: usize) -> anyhow::Result<()> {
    db.execute_unprepared(
        "DROP TABLE IF EXISTS \"user\"; CREATE TABLE \"user\" (id char(32) NOT NULL PRIMARY KEY, \
         password varchar(128) NOT NULL, last_login datetime NULL, is_superuser bool NOT NULL, \
         username varchar(150) NULL, first_name varchar(150) NOT NULL, last_name varchar(150) NOT NULL, \
         email varchar(254) NOT NULL UNIQUE, is_staff bool NOT NULL, is_active bool NOT NULL, \
         date_joined datetime NOT NULL, status varchar(20) NOT NULL, is_deleted bool NOT NULL, \
         created_at datetime NOT NULL, updated_at datetime NOT NULL)",
    )
    .await
    .context("creating the Django table")?;
    let txn = db.begin().await?;
    for start in (0..rows).step_by(BATCH) {
        let values: Vec<String> = (start..rows.min(start + BATCH))
            .map(|n| {
                format!(
                    "('{}', '{DJANGO_HASH}', NULL, 0, NULL, 'Ada', 'Lovelace', 'user{n}@example.com', 0, 1, \
                     '2023-04-05 06:07:08.123456', 'verified', 0, '2023-04-05 06:07:08.123456', \
                     '2023-04-05 06:07:08.123456')",
                    uuid::Uuid::now_v7().simple()
                )
            })
            .collect();
        txn.execute_unprepared(&format!("INSERT INTO \"user\" VALUES {}", values.join(", "))).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The ceiling: every row of the source read in key order, a batch at a time,
/// and written to a scratch table of the destination in one multi-row INSERT
/// and one commit per batch; dropped afterwards.
async fn copy_rows(source: &DatabaseConnection, destination_url: &str) -> anyhow::Result<Duration> {
    let destination = Database::connect(destination_url).await.context("connecting to the bench database")?;
    let backend = destination.get_database_backend();
    destination
        .execute_unprepared(
            "CREATE TABLE bench_import_copy (id varchar(36) PRIMARY KEY, email varchar(254) NOT NULL UNIQUE, \
             password_hash text NOT NULL, display_name varchar(300) NOT NULL, status varchar(32) NOT NULL, \
             created_at varchar(40) NOT NULL, legacy_id varchar(64))",
        )
        .await
        .context("creating the ceiling's scratch table")?;
    let started = Instant::now();
    let mut after = String::new();
    loop {
        let batch = source
            .query_all_raw(Statement::from_sql_and_values(
                source.get_database_backend(),
                "SELECT id, email, password, first_name, last_name, status, date_joined FROM \"user\" \
                 WHERE id > $1 ORDER BY id LIMIT $2",
                [after.clone().into(), (BATCH as i64).into()],
            ))
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.try_get_by_index::<String>(0)?;
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 7);
        let mut tuples = Vec::with_capacity(batch.len());
        for (i, row) in batch.iter().enumerate() {
            let (first, last): (String, String) = (row.try_get_by_index(3)?, row.try_get_by_index(4)?);
            values.extend([
                row.try_get_by_index::<String>(0)?.into(),
                row.try_get_by_index::<String>(1)?.to_lowercase().into(),
                row.try_get_by_index::<String>(2)?.into(),
                format!("{first} {last}").into(),
                row.try_get_by_index::<String>(5)?.into(),
                row.try_get_by_index::<String>(6)?.into(),
                Value::String(None),
            ]);
            let base = i * 7;
            tuples.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6,
                base + 7
            ));
        }
        let txn = destination.begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("INSERT INTO bench_import_copy VALUES {}", tuples.join(", ")),
            values,
        ))
        .await?;
        txn.commit().await?;
    }
    let took = started.elapsed();
    destination.execute_unprepared("DROP TABLE bench_import_copy").await?;
    let _ = destination.close().await;
    Ok(took)
}
