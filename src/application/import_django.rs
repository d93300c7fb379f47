//! `identity-server import-django`: users of a Django project, brought over
//! with their ids, status and password hashes, without any email.

use std::{collections::HashSet, fmt, sync::Arc};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{
    Email, PasswordHash, PersonName, PersonNames, User, UserId, UserStatus, UserTimestamps,
    ports::{Clock, DjangoUserRow, DjangoUserSource, ImportOutcome, ImportedUser, ImportedUserStore, PasswordHasher},
};

/// What is stored for a password nothing can verify (Django's unusable
/// passwords, formats this service does not read): Django's own marker, with
/// none of the original text.
pub const UNUSABLE_PASSWORD: &str = "!";

/// Longest Django key kept as `legacy_id` (the column's width).
pub const MAX_LEGACY_ID_LENGTH: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Without a status column: users are verified (else pending verification).
    pub assume_verified: bool,
    /// Read and report, write nothing.
    pub dry_run: bool,
}

/// Why a row was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    AlreadyPresent,
    Deleted,
    InvalidEmail,
    DuplicateEmail,
    /// A key that is no UUID and too long to keep as `legacy_id`.
    InvalidId,
}

impl SkipReason {
    /// The reason in the report file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyPresent => "already_present",
            Self::Deleted => "deleted",
            Self::InvalidEmail => "invalid_email",
            Self::DuplicateEmail => "duplicate_email",
            Self::InvalidId => "invalid_id",
        }
    }
}

/// A skipped row, for the report: its Django key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    pub django_id: Option<String>,
    pub reason: SkipReason,
}

/// Counts so far; its `Display` is the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub read: u64,
    pub imported: u64,
    /// Imported users whose password nothing verifies (they reset it).
    pub without_usable_password: u64,
    pub already_present: u64,
    pub deleted: u64,
    pub invalid_email: u64,
    pub duplicate_email: u64,
    pub invalid_id: u64,
}

impl ImportSummary {
    pub fn skipped(&self) -> u64 {
        self.already_present + self.deleted + self.invalid_email + self.duplicate_email + self.invalid_id
    }

    fn count(&mut self, reason: SkipReason) {
        let counter = match reason {
            SkipReason::AlreadyPresent => &mut self.already_present,
            SkipReason::Deleted => &mut self.deleted,
            SkipReason::InvalidEmail => &mut self.invalid_email,
            SkipReason::DuplicateEmail => &mut self.duplicate_email,
            SkipReason::InvalidId => &mut self.invalid_id,
        };
        *counter += 1;
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported {}, skipped {} (already present {}, deleted {}, invalid email {}, duplicate email {}, invalid id {})",
            self.imported,
            self.skipped(),
            self.already_present,
            self.deleted,
            self.invalid_email,
            self.duplicate_email,
            self.invalid_id,
        )
    }
}

/// Hears of the import's progress and of every skipped row.
pub trait ImportObserver {
    /// After each batch, with the counts so far.
    fn progressed(&mut self, summary: &ImportSummary, total: u64);

    /// # Errors
    /// The report could not be written: the import stops.
    fn skipped(&mut self, row: &SkippedRow) -> anyhow::Result<()>;
}

/// Reads the source batch by batch and stores each batch before reading the
/// next, so memory stays constant whatever the table's size (a dry run keeps
/// the canonical emails it saw, to find duplicates without writing them).
pub struct ImportDjangoUsers {
    pub store: Arc<dyn ImportedUserStore>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub clock: Arc<dyn Clock>,
    pub options: ImportOptions,
}

impl ImportDjangoUsers {
    /// # Errors
    /// The source, the store or the observer failed; rows are never a reason.
    pub async fn execute(
        &self,
        source: &mut dyn DjangoUserSource,
        observer: &mut dyn ImportObserver,
    ) -> anyhow::Result<ImportSummary> {
        let mut summary = ImportSummary::default();
        let mut seen_in_dry_run = HashSet::new();
        let has_status = source.has_status_column();
        let total = source.total_rows();
        loop {
            let rows = source.next_batch().await?;
            if rows.is_empty() {
                break;
            }
            let now = self.clock.now();
            let mut users = Vec::with_capacity(rows.len());
            for row in rows {
                summary.read += 1;
                match self.map_row(&row, has_status, now) {
                    Ok(user) => users.push(user),
                    Err(reason) => {
                        summary.count(reason);
                        observer.skipped(&SkippedRow { django_id: row.id, reason })?;
                    }
                }
            }
            let outcomes = if self.options.dry_run {
                let mut outcomes = self.store.classify(&users).await?;
                for (user, outcome) in users.iter().zip(outcomes.iter_mut()) {
                    if *outcome == ImportOutcome::Inserted
                        && !seen_in_dry_run.insert(user.user.email().as_str().to_owned())
                    {
                        *outcome = ImportOutcome::DuplicateEmail;
                    }
                }
                outcomes
            } else {
                self.store.insert_absent(&users).await?
            };
            anyhow::ensure!(
                outcomes.len() == users.len(),
                "the store answered for {} of {} users",
                outcomes.len(),
                users.len()
            );
            for (user, outcome) in users.iter().zip(outcomes) {
                let reason = match outcome {
                    ImportOutcome::Inserted => {
                        summary.imported += 1;
                        if user.password_hash.as_str() == UNUSABLE_PASSWORD {
                            summary.without_usable_password += 1;
                        }
                        continue;
                    }
                    ImportOutcome::AlreadyPresent => SkipReason::AlreadyPresent,
                    ImportOutcome::DuplicateEmail => SkipReason::DuplicateEmail,
                };
                summary.count(reason);
                let django_id = user.legacy_id.clone().or_else(|| Some(user.user.id().to_string()));
                observer.skipped(&SkippedRow { django_id, reason })?;
            }
            observer.progressed(&summary, total);
        }
        Ok(summary)
    }

    /// The user a row becomes, or why it is skipped.
    fn map_row(&self, row: &DjangoUserRow, has_status: bool, now: OffsetDateTime) -> Result<ImportedUser, SkipReason> {
        if row.is_deleted == Some(true) {
            return Err(SkipReason::Deleted);
        }
        let email = row.email.as_deref().map(Email::parse).and_then(Result::ok).ok_or(SkipReason::InvalidEmail)?;
        let (id, legacy_id) = match row.id.as_deref().map(str::trim) {
            // Hyphenated, or 32 hex digits as Django stores UUIDs on SQLite.
            Some(raw) => match Uuid::try_parse(raw) {
                Ok(uuid) => (UserId::from_uuid(uuid), None),
                Err(_) if raw.is_empty() || raw.len() > MAX_LEGACY_ID_LENGTH => return Err(SkipReason::InvalidId),
                Err(_) => (UserId::new_v7(), Some(raw.to_owned())),
            },
            None => (UserId::new_v7(), None),
        };
        let is_verified = if has_status {
            row.status.as_deref().map(str::trim) == Some("verified")
        } else {
            self.options.assume_verified
        };
        let is_disabled = row.is_active == Some(false) || row.status.as_deref().map(str::trim) == Some("deactivated");
        let status = match (is_disabled, is_verified) {
            (true, _) => UserStatus::Disabled,
            (false, true) => UserStatus::Active,
            (false, false) => UserStatus::PendingVerification,
        };
        let created_at = row.date_joined.unwrap_or(now);
        let names = PersonNames {
            display_name: None,
            first_name: row.first_name.as_deref().and_then(PersonName::fit),
            last_name: row.last_name.as_deref().and_then(PersonName::fit),
        };
        let timestamps = UserTimestamps {
            created_at,
            // The last thing Django knew of the account, never before its creation.
            updated_at: row.last_login.map_or(created_at, |at| at.max(created_at)),
            // Django kept no verification time: the account's creation stands in.
            verified_at: is_verified.then_some(created_at),
            tokens_valid_after: None,
        };
        let stored = row.password.as_deref().map(str::to_owned).map(PasswordHash::from_phc);
        let password_hash = match stored {
            Some(hash) if self.hasher.can_verify(&hash) => hash,
            _ => PasswordHash::from_phc(UNUSABLE_PASSWORD.to_owned()),
        };
        let user = User::hydrate(id, email, names, status, timestamps).with_legacy_id(legacy_id.clone());
        Ok(ImportedUser { user, password_hash, legacy_id })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::{
        application::fakes::{FakeHasher, FixedClock, T0},
        domain::ports::RepositoryError,
    };

    /// Rows served in batches of two.
    struct Rows {
        rows: Vec<DjangoUserRow>,
        has_status: bool,
    }

    #[async_trait]
    impl DjangoUserSource for Rows {
        fn has_status_column(&self) -> bool {
            self.has_status
        }
        fn total_rows(&self) -> u64 {
            self.rows.len() as u64
        }
        async fn next_batch(&mut self) -> anyhow::Result<Vec<DjangoUserRow>> {
            let take = self.rows.len().min(2);
            Ok(self.rows.drain(..take).collect())
        }
    }

    /// Stores by id, legacy id and email, like the database's unique indexes.
    #[derive(Default)]
    struct Store(Mutex<Vec<ImportedUser>>);

    impl Store {
        fn outcome(stored: &[ImportedUser], user: &ImportedUser) -> ImportOutcome {
            let same_key = |u: &&ImportedUser| {
                u.user.id() == user.user.id() || (u.legacy_id.is_some() && u.legacy_id == user.legacy_id)
            };
            if stored.iter().any(|u| same_key(&u)) {
                ImportOutcome::AlreadyPresent
            } else if stored.iter().any(|u| u.user.email() == user.user.email()) {
                ImportOutcome::DuplicateEmail
            } else {
                ImportOutcome::Inserted
            }
        }
    }

    #[async_trait]
    impl ImportedUserStore for Store {
        async fn insert_absent(&self, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError> {
            let mut stored = self.0.lock().unwrap();
            Ok(users
                .iter()
                .map(|user| {
                    let outcome = Self::outcome(&stored, user);
                    if outcome == ImportOutcome::Inserted {
                        stored.push(user.clone());
                    }
                    outcome
                })
                .collect())
        }
        async fn classify(&self, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError> {
            let stored = self.0.lock().unwrap();
            Ok(users.iter().map(|user| Self::outcome(&stored, user)).collect())
        }
    }

    #[derive(Default)]
    struct Recorder {
        skipped: Vec<SkippedRow>,
        progress_calls: usize,
    }

    impl ImportObserver for Recorder {
        fn progressed(&mut self, _: &ImportSummary, _: u64) {
            self.progress_calls += 1;
        }
        fn skipped(&mut self, row: &SkippedRow) -> anyhow::Result<()> {
            self.skipped.push(row.clone());
            Ok(())
        }
    }

    fn row(id: &str, email: &str, status: Option<&str>) -> DjangoUserRow {
        DjangoUserRow {
            id: Some(id.into()),
            email: Some(email.into()),
            password: Some("md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3".into()),
            status: status.map(Into::into),
            ..Default::default()
        }
    }

    fn import(store: &Arc<Store>, options: ImportOptions) -> ImportDjangoUsers {
        ImportDjangoUsers {
            store: store.clone(),
            hasher: Arc::new(FakeHasher::default()),
            clock: FixedClock::at(T0),
            options,
        }
    }

    const UUID: &str = "0b9a3c9e4f1d4c2ab6f0a1b2c3d4e5f6";

    fn seed_rows() -> Vec<DjangoUserRow> {
        let mut deleted = row("3", "gone@example.com", Some("verified"));
        deleted.is_deleted = Some(true);
        let mut inactive = row("4", "off@example.com", Some("verified"));
        inactive.is_active = Some(false);
        let mut unusable = row("5", "reset-me@example.com", Some("activated"));
        unusable.password = Some("!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH".into());
        vec![
            row(UUID, "Ada@Example.com", Some("verified")),
            row("2", "ADA@example.com", Some("registered")),
            deleted,
            inactive,
            unusable,
            row("6", "not an email", Some("verified")),
            row("7", "deactivated@example.com", Some("deactivated")),
        ]
    }

    #[tokio::test]
    async fn rows_map_to_users_by_status_and_the_rest_are_skipped_with_their_reason() {
        let store = Arc::new(Store::default());
        let mut recorder = Recorder::default();
        let mut source = Rows { rows: seed_rows(), has_status: true };
        let summary = import(&store, ImportOptions::default()).execute(&mut source, &mut recorder).await.unwrap();
        assert_eq!(
            summary.to_string(),
            "imported 4, skipped 3 (already present 0, deleted 1, invalid email 1, duplicate email 1, invalid id 0)"
        );
        assert_eq!(summary.without_usable_password, 1);
        let stored = store.0.lock().unwrap();
        let by_email = |email: &str| stored.iter().find(|u| u.user.email().as_str() == email).unwrap().clone();
        let ada = by_email("ada@example.com");
        assert_eq!(ada.user.id().to_string(), Uuid::try_parse(UUID).unwrap().to_string());
        assert_eq!((ada.user.status(), ada.legacy_id), (UserStatus::Active, None));
        let off = by_email("off@example.com");
        assert_eq!((off.user.status(), off.legacy_id.as_deref()), (UserStatus::Disabled, Some("4")));
        assert_eq!(off.user.legacy_id(), Some("4"));
        assert_eq!(by_email("deactivated@example.com").user.status(), UserStatus::Disabled);
        let unusable = by_email("reset-me@example.com");
        assert_eq!(unusable.user.status(), UserStatus::PendingVerification);
        assert_eq!(unusable.password_hash.as_str(), UNUSABLE_PASSWORD);
        let reasons: Vec<_> = recorder.skipped.iter().map(|s| (s.django_id.as_deref(), s.reason)).collect();
        assert_eq!(
            reasons,
            // Store outcomes come at the end of their batch (of two).
            [
                (Some("2"), SkipReason::DuplicateEmail),
                (Some("3"), SkipReason::Deleted),
                (Some("6"), SkipReason::InvalidEmail)
            ]
        );
        assert_eq!(recorder.progress_calls, 4, "one per batch of two");
    }

    #[tokio::test]
    async fn a_second_run_imports_nothing_and_counts_everything_as_present() {
        let store = Arc::new(Store::default());
        let first = import(&store, ImportOptions::default());
        first.execute(&mut Rows { rows: seed_rows(), has_status: true }, &mut Recorder::default()).await.unwrap();
        let again = first.execute(&mut Rows { rows: seed_rows(), has_status: true }, &mut Recorder::default()).await;
        let again = again.unwrap();
        assert_eq!((again.imported, again.already_present, again.duplicate_email), (0, 4, 1));
    }

    #[tokio::test]
    async fn a_dry_run_writes_nothing_and_reports_what_a_run_would_do() {
        let store = Arc::new(Store::default());
        let options = ImportOptions { dry_run: true, ..ImportOptions::default() };
        let dry = import(&store, options)
            .execute(&mut Rows { rows: seed_rows(), has_status: true }, &mut Recorder::default())
            .await
            .unwrap();
        assert!(store.0.lock().unwrap().is_empty());
        let real = import(&store, ImportOptions::default())
            .execute(&mut Rows { rows: seed_rows(), has_status: true }, &mut Recorder::default())
            .await
            .unwrap();
        assert_eq!(dry.to_string(), real.to_string());
    }

    #[tokio::test]
    async fn without_a_status_column_users_are_pending_unless_assumed_verified() {
        for (assume_verified, expected) in [(false, UserStatus::PendingVerification), (true, UserStatus::Active)] {
            let store = Arc::new(Store::default());
            let options = ImportOptions { assume_verified, ..ImportOptions::default() };
            let mut source = Rows { rows: vec![row("1", "ada@example.com", None)], has_status: false };
            import(&store, options).execute(&mut source, &mut Recorder::default()).await.unwrap();
            assert_eq!(store.0.lock().unwrap()[0].user.status(), expected);
        }
    }
}
