//! `identity-server import-django`: the command around the
//! [`ImportDjangoUsers`] use case: its flags, the source and the store, the
//! progress display, the report file and the summary line.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use migration::MigratorTrait;
use sea_orm::ConnectionTrait;

use crate::{
    application::{ImportDjangoUsers, ImportObserver, ImportOptions, ImportSummary, SkippedRow},
    config::Settings,
    infrastructure::{
        Argon2Hasher, SystemClock,
        sea_orm::{SeaOrmImportedUsers, SqlDjangoSource, connect, migrate},
    },
};

pub const USAGE: &str =
    "usage: identity-server import-django --source URL [--table NAME] [--assume-verified] [--dry-run] [--report FILE]";

/// Rows read and written per round trip: large enough that per-statement
/// costs vanish, small enough that a batch's statement stays within SQLite's
/// bound-parameter limit.
pub const BATCH_SIZE: u64 = 500;

/// The command's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportArgs {
    pub source: String,
    pub table: String,
    pub assume_verified: bool,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
}

impl ImportArgs {
    /// `--flag value` or `--flag=value`.
    ///
    /// # Errors
    /// An unknown flag, a missing value, or no `--source`; the message ends with the usage.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut source = None;
        let mut table = "auth_user".to_owned();
        let (mut assume_verified, mut dry_run, mut report) = (false, false, None);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .with_context(|| format!("{flag} needs a value; {USAGE}"))
            };
            match flag {
                "--source" => source = Some(value()?),
                "--table" => table = value()?,
                "--report" => report = Some(PathBuf::from(value()?)),
                "--assume-verified" => assume_verified = true,
                "--dry-run" => dry_run = true,
                other => anyhow::bail!("unknown argument {other:?}; {USAGE}"),
            }
        }
        let source = source.with_context(|| format!("--source is required; {USAGE}"))?;
        Ok(Self { source, table, assume_verified, dry_run, report })
    }
}

/// Runs the import against `IDENTITY_DATABASE_URL` (migrated first) and
/// prints the summary line on stdout.
///
/// # Errors
/// One line for the operator: bad flags, an unreachable source, a missing
/// table or column, a storage failure.
pub async fn run(settings: &Settings, args: &[String]) -> anyhow::Result<()> {
    let args = ImportArgs::parse(args)?;
    let summary = import(settings, &args).await?;
    println!("{summary}");
    Ok(())
}

/// Whether every migration is applied, read without writing (SeaORM's own
/// pending check would create its bookkeeping table).
async fn is_migrated(db: &sea_orm::DatabaseConnection) -> bool {
    let statement = sea_orm::Statement::from_string(db.get_database_backend(), "SELECT version FROM seaql_migrations");
    let Ok(rows) = db.query_all_raw(statement).await else { return false };
    let applied: Vec<String> = rows.iter().filter_map(|row| row.try_get_by_index::<String>(0).ok()).collect();
    migration::Migrator::migrations().iter().all(|wanted| applied.iter().any(|name| name == wanted.name()))
}

/// The import itself, for the command and for tests and the benchmark.
///
/// # Errors
/// As [`run`].
pub async fn import(settings: &Settings, args: &ImportArgs) -> anyhow::Result<ImportSummary> {
    let mut source = SqlDjangoSource::open(&args.source, &args.table, BATCH_SIZE).await?;
    let db = connect(&settings.database).await?;
    if !args.dry_run {
        migrate(&db).await?;
    } else {
        // A dry run writes nothing, not even the schema, and needs it to compare.
        anyhow::ensure!(
            is_migrated(&db).await,
            "the service database (IDENTITY_DATABASE_URL) is not migrated and a dry run writes nothing: \
             run `identity-server migrate` first"
        );
    }
    // Only to tell verifiable hashes from the rest: nothing is hashed.
    let argon2 = crate::infrastructure::Argon2Settings { max_concurrent: 1, ..settings.passwords.argon2 };
    let hasher = Arc::new(Argon2Hasher::new(argon2)?);
    let use_case = ImportDjangoUsers {
        store: Arc::new(SeaOrmImportedUsers::new(db.clone())),
        hasher,
        clock: Arc::new(SystemClock),
        options: ImportOptions { assume_verified: args.assume_verified, dry_run: args.dry_run },
    };
    let report = match &args.report {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create the report file {}", path.display()))?,
        )),
        None => None,
    };
    let mut observer = Console::new(report);
    let summary = use_case.execute(&mut source, &mut observer).await?;
    observer.finish()?;
    if summary.without_usable_password > 0 {
        eprintln!(
            "{} imported users have no usable password: they log in after RequestPasswordReset",
            summary.without_usable_password
        );
    }
    let _ = db.close().await;
    Ok(summary)
}

/// Progress on stderr (a bar on a terminal, a line every few seconds
/// otherwise), and the report file.
struct Console {
    report: Option<std::io::BufWriter<std::fs::File>>,
    is_terminal: bool,
    last_line: Instant,
}

/// How often progress is printed when stderr is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Console {
    fn new(report: Option<std::io::BufWriter<std::fs::File>>) -> Self {
        Self { report, is_terminal: std::io::stderr().is_terminal(), last_line: Instant::now() }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if self.is_terminal {
            eprintln!();
        }
        if let Some(report) = &mut self.report {
            report.flush().context("cannot write the report file")?;
        }
        Ok(())
    }
}

impl ImportObserver for Console {
    fn progressed(&mut self, summary: &ImportSummary, total: u64) {
        let done = summary.read.min(total.max(summary.read));
        if self.is_terminal {
            const WIDTH: u64 = 30;
            let filled = if total == 0 { WIDTH } else { done * WIDTH / total.max(1) };
            let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '-' }).collect();
            eprint!("\r[{bar}] {done}/{total} read, {} imported", summary.imported);
        } else if self.last_line.elapsed() >= PROGRESS_EVERY {
            self.last_line = Instant::now();
            eprintln!("{done}/{total} rows read, {} imported", summary.imported);
        }
    }

    fn skipped(&mut self, row: &SkippedRow) -> anyhow::Result<()> {
        let Some(report) = &mut self.report else { return Ok(()) };
        let line = serde_json::json!({ "django_id": row.django_id, "reason": row.reason.as_str() });
        writeln!(report, "{line}").context("cannot write the report file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(raw: &[&str]) -> anyhow::Result<ImportArgs> {
        ImportArgs::parse(&raw.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_parse_in_either_form_with_the_documented_defaults() {
        let parsed = args(&["--source", "sqlite://django.db", "--dry-run", "--report=skipped.jsonl"]).unwrap();
        assert_eq!(
            parsed,
            ImportArgs {
                source: "sqlite://django.db".into(),
                table: "auth_user".into(),
                assume_verified: false,
                dry_run: true,
                report: Some("skipped.jsonl".into()),
            }
        );
        let seed = args(&["--source=postgres://db/app", "--table", "user", "--assume-verified"]).unwrap();
        assert_eq!((seed.table.as_str(), seed.assume_verified), ("user", true));
    }

    #[test]
    fn a_missing_source_or_an_unknown_flag_is_one_line_with_the_usage() {
        for bad in [&["--dry-run"][..], &["--source"], &["--source", "x", "--force"]] {
            let message = args(bad).unwrap_err().to_string();
            assert!(message.ends_with(USAGE) && !message.contains('\n'), "{message}");
        }
    }
}
