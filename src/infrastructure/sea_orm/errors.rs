use sea_orm::{DbErr, RuntimeErr, SqlxError};

use crate::domain::ports::RepositoryError;

/// Classifies a database error where it happens: connection trouble is
/// `Unavailable` (the caller may retry), anything else is unexpected.
pub fn classify(error: DbErr) -> RepositoryError {
    if is_unavailable(&error) {
        RepositoryError::Unavailable(anyhow::Error::new(error).context("database unreachable"))
    } else {
        RepositoryError::Unexpected(anyhow::Error::new(error).context("database operation failed"))
    }
}

fn is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            SqlxError::Io(_)
            | SqlxError::PoolTimedOut
            | SqlxError::PoolClosed
            | SqlxError::WorkerCrashed
            | SqlxError::Tls(_) => true,
            // SQLSTATE class 08 (connection exception), 57P0x (server shutting down,
            // connection terminated by an administrator), 53300 (too many connections).
            SqlxError::Database(db) => {
                db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P") || code == "53300")
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether the error is a unique-constraint violation (a duplicate).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Whether the error is the violation of `users.email`'s unique index, and not
/// of another table's index in the same batch. PostgreSQL names the violated
/// index in the error itself (whatever the language of its messages); SQLite
/// names only the column, in its message ("UNIQUE constraint failed: users.email").
pub fn is_duplicate_email(error: &DbErr) -> bool {
    let Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) = error.sql_err() else { return false };
    let constraint = match error {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            e.as_database_error().and_then(|db| db.constraint())
        }
        _ => None,
    };
    match constraint {
        Some(name) => name == migration::USERS_EMAIL_KEY,
        None => message.contains("users.email"),
    }
}
