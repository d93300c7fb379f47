//! Importing users from another system (a Django project's user table).

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

/// One row of a Django user table, as read from its database. Columns the
/// table lacks are `None`, as are NULLs.
#[derive(Clone, Default)]
pub struct DjangoUserRow {
    /// The primary key as text: a UUID (hyphenated or 32 hex digits), or an integer.
    pub id: Option<String>,
    pub email: Option<String>,
    /// Django's `<algorithm>$...` string, or `!...` for an unusable password.
    pub password: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_active: Option<bool>,
    pub is_deleted: Option<bool>,
    /// The seed project's `registered`/`activated`/`verified`/`deactivated`.
    pub status: Option<String>,
    pub date_joined: Option<OffsetDateTime>,
    pub last_login: Option<OffsetDateTime>,
}

impl fmt::Debug for DjangoUserRow {
    // Personal data and a password hash: only the key goes to logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DjangoUserRow").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Reads a Django user table in batches, in primary-key order.
#[async_trait]
pub trait DjangoUserSource: Send {
    /// Whether the table has the seed project's `status` column (without it,
    /// the import decides between verified and pending on its own).
    fn has_status_column(&self) -> bool;

    /// Rows in the table, counted when the source was opened (for progress).
    fn total_rows(&self) -> u64;

    /// The next rows; empty once every row was read.
    ///
    /// # Errors
    /// The source failed.
    async fn next_batch(&mut self) -> anyhow::Result<Vec<DjangoUserRow>>;
}

/// A user ready to be stored by the import: the user, their stored hash as
/// it came (or an unusable marker), and their old key when it was no UUID.
#[derive(Debug, Clone)]
pub struct ImportedUser {
    pub user: User,
    pub password_hash: PasswordHash,
    pub legacy_id: Option<String>,
}

/// What became of one imported user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Inserted,
    /// A user with this id or legacy id exists (an earlier run brought it over).
    AlreadyPresent,
    /// Another user has this canonical email.
    DuplicateEmail,
}

/// Where imported users go: inserted only if absent, never overwriting.
#[async_trait]
pub trait ImportedUserStore: Send + Sync {
    /// Inserts those of `users` whose id, legacy id and canonical email are
    /// all free (checked together with the insert, atomically), and says what
    /// became of each, in order. Within `users`, the first of two with one
    /// email wins. Writes no event and no token.
    ///
    /// # Errors
    /// Storage failures only.
    async fn insert_absent(&self, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError>;

    /// What [`Self::insert_absent`] would do, writing nothing (a dry run).
    ///
    /// # Errors
    /// Storage failures only.
    async fn classify(&self, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError>;
}
