//! A Django project's user table, read from its SQLite or PostgreSQL database
//! in primary-key order, a batch at a time (keyset pagination: each batch is
//! one indexed range scan, whatever the table's size). Never writes: SQLite
//! is opened read-only, and only `SELECT`s are sent.

use anyhow::Context;
use async_trait::async_trait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, QueryResult, Statement};
use time::{OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339, macros::format_description};

use crate::domain::ports::{DjangoUserRow, DjangoUserSource};

/// The columns the import reads when the table has them.
const COLUMNS: [&str; 10] = [
    "id",
    "email",
    "password",
    "first_name",
    "last_name",
    "is_active",
    "is_deleted",
    "status",
    "date_joined",
    "last_login",
];

/// The columns without which there is nothing to import.
const REQUIRED: [&str; 2] = ["email", "password"];

pub struct SqlDjangoSource {
    db: DatabaseConnection,
    table: String,
    columns: Vec<&'static str>,
    /// PostgreSQL's type of `id`, to compare the keyset bound with it.
    id_type: Option<String>,
    batch_size: u64,
    total: u64,
    /// The last key read; `None` before the first batch.
    after: Option<String>,
    /// Rows read, for the paging of a table without `id`.
    offset: u64,
    is_done: bool,
}

impl SqlDjangoSource {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`) and checks that
    /// `table` exists with the required columns.
    ///
    /// # Errors
    /// One line for the operator: unreachable, no such table, a required column missing.
    pub async fn open(url: &str, table: &str, batch_size: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !table.is_empty() && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "--table must be a plain table name (letters, digits, underscores), not {table:?}"
        );
        let db = connect_read_only(url).await?;
        let backend = db.get_database_backend();
        let (sql, values) = match backend {
            DbBackend::Postgres => (
                "SELECT column_name AS name, data_type AS kind FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                vec![table.into()],
            ),
            _ => ("SELECT name, type AS kind FROM pragma_table_info(?)", vec![table.into()]),
        };
        let found = db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .context("cannot read the source database's schema")?;
        let mut present = Vec::new();
        let mut id_type = None;
        for row in &found {
            let name: String = row.try_get("", "name").context("reading the source's columns")?;
            if let Some(column) = COLUMNS.iter().find(|c| **c == name) {
                present.push(*column);
                if name == "id" && backend == DbBackend::Postgres {
                    id_type = Some(row.try_get::<String>("", "kind").context("reading the type of id")?);
                }
            }
        }
        anyhow::ensure!(!found.is_empty(), "table {table:?} not found in the source database");
        for required in REQUIRED {
            anyhow::ensure!(present.contains(&required), "table {table:?} has no column {required:?}");
        }
        let count = format!("SELECT COUNT(*) AS n FROM \"{table}\"");
        let total = db
            .query_one_raw(Statement::from_string(backend, count))
            .await
            .with_context(|| format!("cannot count the rows of {table:?}"))?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        Ok(Self {
            db,
            table: table.to_owned(),
            columns: present,
            id_type,
            batch_size,
            total: u64::try_from(total).unwrap_or(0),
            after: None,
            offset: 0,
            is_done: false,
        })
    }

    fn has(&self, column: &str) -> bool {
        self.columns.contains(&column)
    }

    fn batch_statement(&self) -> Statement {
        let backend = self.db.get_database_backend();
        // Everything as text, so that one reader serves both backends and every
        // column type Django might have used (uuid, char(32), integer, bool).
        // Ordering and the keyset bound name `src."id"`, the column itself: a
        // bare `id` in ORDER BY would be the text alias, and sort 10 before 2.
        let select: Vec<String> = self.columns.iter().map(|c| format!("CAST(\"{c}\" AS TEXT) AS \"{c}\"")).collect();
        let select = select.join(", ");
        let table = &self.table;
        let limit = self.batch_size;
        if !self.has("id") {
            let offset = self.offset;
            let sql =
                format!("SELECT {select} FROM \"{table}\" AS src ORDER BY src.\"email\" LIMIT {limit} OFFSET {offset}");
            return Statement::from_string(backend, sql);
        }
        match &self.after {
            None => Statement::from_string(
                backend,
                format!("SELECT {select} FROM \"{table}\" AS src ORDER BY src.\"id\" LIMIT {limit}"),
            ),
            Some(after) => {
                let bound = match (backend, &self.id_type) {
                    // The type name comes from the catalogue, never from the user.
                    (DbBackend::Postgres, Some(kind)) => format!("CAST($1 AS {kind})"),
                    (DbBackend::Postgres, None) => "$1".to_owned(),
                    // SQLite compares the text with the column's affinity.
                    _ => "?".to_owned(),
                };
                let sql = format!(
                    "SELECT {select} FROM \"{table}\" AS src WHERE src.\"id\" > {bound} ORDER BY src.\"id\" LIMIT {limit}"
                );
                Statement::from_sql_and_values(backend, sql, [after.clone().into()])
            }
        }
    }

    fn read_row(&self, row: &QueryResult) -> anyhow::Result<DjangoUserRow> {
        let text = |column: &str| -> anyhow::Result<Option<String>> {
            if !self.has(column) {
                return Ok(None);
            }
            row.try_get::<Option<String>>("", column).with_context(|| format!("reading column {column}"))
        };
        Ok(DjangoUserRow {
            id: text("id")?,
            email: text("email")?,
            password: text("password")?,
            first_name: text("first_name")?,
            last_name: text("last_name")?,
            is_active: text("is_active")?.as_deref().and_then(parse_bool),
            is_deleted: text("is_deleted")?.as_deref().and_then(parse_bool),
            status: text("status")?,
            date_joined: text("date_joined")?.as_deref().and_then(parse_timestamp),
            last_login: text("last_login")?.as_deref().and_then(parse_timestamp),
        })
    }
}

/// Opens the source so that nothing can be written through it: SQLite in
/// read-only mode (it must exist), PostgreSQL in read-only transactions.
async fn connect_read_only(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = if url.starts_with("sqlite:") {
        let separator = if url.contains('?') { '&' } else { '?' };
        ConnectOptions::new(format!("{url}{separator}mode=ro"))
    } else {
        ConnectOptions::new(url)
    };
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .with_context(|| format!("cannot connect to the source database ({})", without_credentials(url)))?;
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await
            .context("cannot make the source connection read-only")?;
    }
    Ok(db)
}

/// The URL without a password, for messages.
fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// PostgreSQL's `true`/`false`, SQLite's `1`/`0`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// PostgreSQL's `2024-05-01 12:00:00.123456+00`, SQLite's naive UTC
/// `2024-05-01 12:00:00.123456` (Django with `USE_TZ`), or RFC 3339.
fn parse_timestamp(raw: &str) -> Option<OffsetDateTime> {
    let raw = raw.trim();
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(at);
    }
    let with_offset = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory][optional [:[offset_minute]]]"
    );
    if let Ok(at) = OffsetDateTime::parse(raw, with_offset) {
        return Some(at);
    }
    let naive =
        format_description!("[year]-[month]-[day][first [ ][T]][hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(raw, naive).ok().map(PrimitiveDateTime::assume_utc)
}

#[async_trait]
impl DjangoUserSource for SqlDjangoSource {
    fn has_status_column(&self) -> bool {
        self.has("status")
    }

    fn total_rows(&self) -> u64 {
        self.total
    }

    async fn next_batch(&mut self) -> anyhow::Result<Vec<DjangoUserRow>> {
        if self.is_done {
            return Ok(Vec::new());
        }
        let statement = self.batch_statement();
        let rows = self.db.query_all_raw(statement).await.with_context(|| format!("reading {:?}", self.table))?;
        let batch = rows.iter().map(|row| self.read_row(row)).collect::<anyhow::Result<Vec<_>>>()?;
        self.is_done = (batch.len() as u64) < self.batch_size;
        self.offset += batch.len() as u64;
        if let Some(last) = batch.last() {
            self.after.clone_from(&last.id);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_in_each_backends_text_form() {
        let expected = time::macros::datetime!(2024-05-01 12:00:00.123456 UTC);
        for raw in [
            "2024-05-01 12:00:00.123456+00",
            "2024-05-01 12:00:00.123456+00:00",
            "2024-05-01 12:00:00.123456",
            "2024-05-01T12:00:00.123456Z",
        ] {
            assert_eq!(parse_timestamp(raw), Some(expected), "{raw}");
        }
        assert_eq!(parse_timestamp("2024-05-01 14:00:00+02"), Some(time::macros::datetime!(2024-05-01 12:00 UTC)));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn booleans_read_in_each_backends_text_form() {
        assert_eq!(
            [parse_bool("1"), parse_bool("true"), parse_bool("0"), parse_bool("f")],
            [Some(true), Some(true), Some(false), Some(false)]
        );
    }

    #[test]
    fn messages_never_show_the_sources_password() {
        assert_eq!(without_credentials("postgres://django:s3cret@db:5432/app"), "postgres://…@db:5432/app");
        assert_eq!(without_credentials("sqlite:///srv/app/db.sqlite3"), "sqlite:///srv/app/db.sqlite3");
    }
}
