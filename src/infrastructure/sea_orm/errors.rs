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
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            SqlxError::Io(_) | SqlxError::PoolTimedOut | SqlxError::PoolClosed | SqlxError::WorkerCrashed | SqlxError::Tls(_)
        ),
        _ => false,
    }
}

/// Whether the error is a unique-constraint violation (a duplicate).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}
