use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, ExprTrait, Iterable,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Alias, CommonTableExpression, Expr, InsertStatement, Query, WithClause},
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    classify,
    entities::{sessions, users},
    known_devices, outbox_store,
    user_lock::{Lock, lock_user, still_matters},
    user_repository::to_user,
    write_batch::WriteBatch,
};
use crate::domain::{
    AuthMethods, ClientAddress, ClientContext, DomainEvent, LoginAttemptKeys, TokenHash, User, UserAgent, UserId,
    ports::{
        DeviceSighting, LiveSession, LoginCommit, NewSession, RepositoryError, Rotation, SessionRecord,
        SessionRepository,
    },
};

/// Rows `list_live` reads at most: each family has one live row (a few more
/// just after concurrent refreshes), so this covers the listing's bound with
/// room to spare while keeping a hostile number of logins a bounded read.
const MAX_LIVE_ROWS_READ: u64 = 1000;

/// Refresh-token sessions in SQL; only the token's digest is stored.
#[derive(Clone)]
pub struct SeaOrmSessionRepository {
    db: DatabaseConnection,
    /// Where reads outside a transaction go (see [`super::connect_readers`]).
    reads: DatabaseConnection,
    access_token_lifetime: Option<std::time::Duration>,
    /// Wakes the relays after a commit that wrote events.
    outbox_written: Arc<Notify>,
}

impl SeaOrmSessionRepository {
    pub fn new(db: DatabaseConnection, outbox_written: Arc<Notify>) -> Self {
        Self { reads: db.clone(), db, access_token_lifetime: None, outbox_written }
    }

    /// Sends the reads made outside a transaction to `reads` instead.
    #[must_use]
    pub fn with_readers(mut self, reads: DatabaseConnection) -> Self {
        self.reads = reads;
        self
    }

    /// Writes the events and commits.
    async fn commit_with_events(
        &self,
        txn: DatabaseTransaction,
        events: &[DomainEvent],
    ) -> Result<(), RepositoryError> {
        outbox_store::commit_with_events(txn, WriteBatch::new(&self.db), events, &self.outbox_written).await
    }

    /// See [`super::SeaOrmUserRepository::with_access_token_lifetime`].
    #[must_use]
    pub fn with_access_token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.access_token_lifetime = Some(lifetime);
        self
    }
}

impl SeaOrmSessionRepository {
    /// Revokes the family's rows that still matter (see [`still_matters`]);
    /// returns their ids. Call it under the user's lock.
    async fn revoke_family_rows(
        &self,
        txn: &DatabaseTransaction,
        family_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<Uuid>, RepositoryError> {
        let still_matters = still_matters(self.access_token_lifetime.map(|lifetime| now - lifetime));
        let ids: Vec<Uuid> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::FamilyId.eq(family_id))
            .filter(still_matters.clone())
            .into_tuple()
            .all(txn)
            .await
            .map_err(classify)?;
        sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .filter(sessions::Column::FamilyId.eq(family_id))
            .filter(still_matters)
            .exec(txn)
            .await
            .map_err(classify)?;
        Ok(ids)
    }
}

/// Takes the user's lock for a refresh of `old` and returns the user, or
/// `None` when the user is gone, may no longer log in, or revoked every
/// session since `old`'s login.
async fn may_refresh(txn: &DatabaseTransaction, old: &SessionRecord) -> Result<Option<User>, RepositoryError> {
    let Some(user_row) = lock_user(txn, old.user_id, Lock::Share).await? else { return Ok(None) };
    let user = to_user(&user_row)?;
    let is_cut_off = user.tokens_valid_after().is_some_and(|after| old.authenticated_at < after);
    Ok((user.ensure_can_log_in().is_ok() && !is_cut_off).then_some(user))
}

pub(super) fn row(session: &NewSession) -> sessions::ActiveModel {
    sessions::ActiveModel {
        id: Set(session.id),
        family_id: Set(session.family_id),
        user_id: Set(session.user_id.as_uuid()),
        token_hash: Set(session.token_hash.to_hex()),
        created_at: Set(session.created_at),
        expires_at: Set(session.expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
        authenticated_at: Set(Some(session.authenticated_at)),
        user_agent: Set(session.context.user_agent.as_ref().map(|agent| agent.as_str().to_owned())),
        client_address: Set(session.context.address.map(|address| address.to_string())),
        amr: Set(Some(session.methods.as_str().to_owned())),
    }
}

/// The context stored with a row; a value that no longer parses is dropped
/// rather than failing the listing.
fn context(s: &sessions::Model) -> ClientContext {
    ClientContext {
        user_agent: s.user_agent.as_deref().and_then(UserAgent::hydrate),
        address: s
            .client_address
            .as_deref()
            .and_then(|raw| raw.parse::<std::net::IpAddr>().ok())
            .map(ClientAddress::new),
    }
}

/// One entry per family, described by its newest row (`rows` come newest
/// first), in the order of their logins, newest first.
fn live_sessions(rows: Vec<sessions::Model>, limit: usize) -> Vec<LiveSession> {
    let mut seen = std::collections::HashSet::new();
    let mut live: Vec<LiveSession> = rows
        .into_iter()
        .filter(|row| seen.insert(row.family_id))
        .map(|row| LiveSession {
            id: row.family_id,
            user_id: UserId::from_uuid(row.user_id),
            created_at: row.authenticated_at.unwrap_or(row.created_at),
            last_used_at: row.created_at,
            expires_at: row.expires_at,
            context: context(&row),
        })
        .collect();
    live.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    live.truncate(limit);
    live
}

/// Marks `old_id` rotated if it still is neither rotated nor revoked and, only
/// then, inserts `new`: one command on SQLite, one statement on PostgreSQL.
/// Whether the claim took the row.
async fn claim_and_insert(
    txn: &DatabaseTransaction,
    old_id: Uuid,
    new: &NewSession,
    now: OffsetDateTime,
) -> Result<bool, RepositoryError> {
    let mut claim = sessions::Entity::update_many()
        .col_expr(sessions::Column::RotatedAt, Expr::value(now))
        .filter(sessions::Column::Id.eq(old_id))
        .filter(sessions::Column::RotatedAt.is_null())
        .filter(sessions::Column::RevokedAt.is_null())
        .into_query();
    let (columns, values) = columns_and_values(new)?;
    let backend = txn.get_database_backend();
    let built = |error| RepositoryError::Unexpected(anyhow::anyhow!("building the rotation: {error}"));
    if backend == DbBackend::Postgres {
        // `WITH claimed AS (UPDATE … RETURNING id) INSERT … SELECT … FROM claimed`.
        let claimed = Alias::new("claimed");
        claim.returning_col(sessions::Column::Id);
        let cte = CommonTableExpression::new().query(claim).table_name(claimed.clone()).to_owned();
        let mut insert = Query::insert();
        insert
            .into_table(sessions::Entity)
            .columns(columns)
            .select_from(Query::select().exprs(values).from(claimed).to_owned())
            .map_err(built)?;
        let statement = backend.build(&insert.with(WithClause::new().cte(cte).to_owned()));
        return Ok(txn.execute_raw(statement).await.map_err(classify)?.rows_affected() == 1);
    }
    // SQLite allows no UPDATE in a CTE. `changes()` is what this connection's
    // last finished write changed: the claim's, because the claim is the
    // statement just before the insert in the same command. Keep the two
    // adjacent: a write between them would answer for the claim.
    let mut insert = Query::insert();
    insert
        .into_table(sessions::Entity)
        .columns(columns)
        .select_from(Query::select().exprs(values).and_where(Expr::cust("changes() = 1")).to_owned())
        .map_err(built)?;
    let mut batch = WriteBatch::new(txn);
    batch.push(backend.build(&claim));
    batch.push(backend.build(&insert));
    // The claim's row and the new one, or neither.
    Ok(batch.run_counting(txn).await.map_err(classify)? == 2)
}

/// Every column of a new session's row with its value, for an `INSERT … SELECT`.
fn columns_and_values(new: &NewSession) -> Result<(Vec<sessions::Column>, Vec<Expr>), RepositoryError> {
    let values = row(new);
    let mut columns = Vec::new();
    let mut selected = Vec::new();
    for column in sessions::Column::iter() {
        let value = values
            .get(column)
            .into_value()
            .ok_or_else(|| RepositoryError::Unexpected(anyhow::anyhow!("a new session row leaves {column:?} unset")))?;
        columns.push(column);
        selected.push(Expr::val(value));
    }
    Ok((columns, selected))
}

/// `INSERT INTO sessions … SELECT <new's values> FROM sessions WHERE …`: the
/// row goes in only if, in the same statement, `spent` is still unrevoked, was
/// rotated after `rotated_after`, and no member of its family was revoked (a
/// family revocation may skip rows rotated long ago, so `spent`'s own mark
/// is not enough). Whatever the locks, a retry never resurrects a revoked family.
fn sibling_insert(
    spent: &SessionRecord,
    new: &NewSession,
    rotated_after: OffsetDateTime,
) -> Result<InsertStatement, RepositoryError> {
    let (columns, selected) = columns_and_values(new)?;
    let family = Alias::new("family");
    let revoked_member = Query::select()
        .expr(Expr::val(1))
        .from_as(sessions::Entity, family.clone())
        .and_where(Expr::col((family.clone(), sessions::Column::UserId)).eq(spent.user_id.as_uuid()))
        .and_where(Expr::col((family.clone(), sessions::Column::FamilyId)).eq(spent.family_id))
        .and_where(Expr::col((family, sessions::Column::RevokedAt)).is_not_null())
        .to_owned();
    let source = Query::select()
        .exprs(selected)
        .from(sessions::Entity)
        .and_where(Expr::col((sessions::Entity, sessions::Column::Id)).eq(spent.id))
        .and_where(Expr::col((sessions::Entity, sessions::Column::RevokedAt)).is_null())
        .and_where(Expr::col((sessions::Entity, sessions::Column::RotatedAt)).gt(rotated_after))
        .and_where(Expr::exists(revoked_member).not())
        .to_owned();
    let mut insert = Query::insert();
    insert
        .into_table(sessions::Entity)
        .columns(columns)
        .select_from(source)
        .map_err(|error| RepositoryError::Unexpected(anyhow::anyhow!("building the sibling insert: {error}")))?;
    Ok(insert)
}

fn record(s: sessions::Model) -> SessionRecord {
    SessionRecord {
        id: s.id,
        family_id: s.family_id,
        user_id: UserId::from_uuid(s.user_id),
        expires_at: s.expires_at,
        // The migration fills it for older rows; a session is never younger than its family.
        authenticated_at: s.authenticated_at.unwrap_or(s.created_at),
        methods: s.amr.as_deref().and_then(AuthMethods::parse).unwrap_or_default(),
        rotated_at: s.rotated_at,
        is_revoked: s.revoked_at.is_some(),
    }
}

#[async_trait]
impl SessionRepository for SeaOrmSessionRepository {
    async fn insert_for_login(
        &self,
        session: &NewSession,
        verified_version: i32,
        upgraded_hash: Option<&crate::domain::PasswordHash>,
        events: &[DomainEvent],
        device: Option<&DeviceSighting>,
        throttle: &LoginAttemptKeys,
    ) -> Result<LoginCommit, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let lock = if upgraded_hash.is_some() { Lock::Update } else { Lock::Share };
        let Some(user_row) = lock_user(&txn, session.user_id, lock).await? else {
            return Ok(LoginCommit::CredentialsChanged);
        };
        if user_row.password_version != verified_version {
            return Ok(LoginCommit::CredentialsChanged);
        }
        if let Err(refusal) = to_user(&user_row)?.ensure_can_log_in() {
            return Ok(LoginCommit::Refused(refusal));
        }
        if let Some(hash) = upgraded_hash {
            // Same password, today's cost: the version stays, so concurrent
            // logins with the same password are not turned away.
            users::Entity::update_many()
                .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
                .filter(users::Column::Id.eq(user_row.id))
                .exec(&txn)
                .await
                .map_err(classify)?;
        }
        if let Some(device) = device {
            // Reads what it writes next: not for the batch below.
            known_devices::remember(&txn, user_row.id, device).await?;
        }
        // What is left needs nothing back: one command on SQLite.
        let mut writes = WriteBatch::new(&txn);
        writes.push_query(&sessions::Entity::insert(row(session)));
        super::login_throttles::push_clear_after_success(&mut writes, throttle, session.created_at);
        outbox_store::commit_with_events(txn, writes, events, &self.outbox_written).await?;
        Ok(LoginCommit::Created)
    }

    async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, RepositoryError> {
        let found = sessions::Entity::find()
            .filter(sessions::Column::TokenHash.eq(hash.to_hex()))
            .one(&self.reads)
            .await
            .map_err(classify)?;
        Ok(found.map(record))
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<SessionRecord>, RepositoryError> {
        Ok(sessions::Entity::find_by_id(id).one(&self.reads).await.map_err(classify)?.map(record))
    }

    async fn rotate(
        &self,
        old: &SessionRecord,
        new: &NewSession,
        now: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // Under the user's lock, a revocation of every session either ran
        // before (and revoked `old`, which the claim below then misses) or
        // waits for this commit (and then sees `new`): no session slips past it.
        let Some(user) = may_refresh(&txn, old).await? else { return Ok(Rotation::Refused) };
        // The conditional update is the claim: of concurrent rotations of one
        // token exactly one sees a row affected, and only it inserts `new`.
        if !claim_and_insert(&txn, old.id, new, now).await? {
            return Ok(Rotation::Lost);
        }
        txn.commit().await.map_err(classify)?;
        Ok(Rotation::Rotated(user))
    }

    async fn add_sibling(
        &self,
        spent: &SessionRecord,
        new: &NewSession,
        rotated_after: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // The same lock as `rotate`: a revocation of the family (which takes
        // the lock exclusively) either committed before, and the insert below
        // then finds it, or waits for this commit and then revokes the sibling
        // too.
        let Some(user) = may_refresh(&txn, spent).await? else { return Ok(Rotation::Refused) };
        let insert = sibling_insert(spent, new, rotated_after)?;
        let inserted = txn.execute(&insert).await.map_err(classify)?;
        if inserted.rows_affected() != 1 {
            return Ok(Rotation::Lost);
        }
        txn.commit().await.map_err(classify)?;
        Ok(Rotation::Rotated(user))
    }

    async fn revoke_family(
        &self,
        member: &SessionRecord,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Vec<Uuid>, RepositoryError> {
        let family_id = member.family_id;
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // The user's lock keeps a concurrent rotation from adding to the family
        // between the read of its live members and their revocation.
        lock_user(&txn, member.user_id, Lock::Update).await?;
        let ids = self.revoke_family_rows(&txn, family_id, now).await?;
        // Nothing ended (a concurrent revocation won): nothing to announce.
        let events = if ids.is_empty() { &[] } else { events };
        self.commit_with_events(txn, events).await?;
        Ok(ids)
    }

    async fn list_live(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<LiveSession>, RepositoryError> {
        let rows = sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::RotatedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .order_by_desc(sessions::Column::CreatedAt)
            .order_by_desc(sessions::Column::Id)
            .limit(MAX_LIVE_ROWS_READ)
            .all(&self.reads)
            .await
            .map_err(classify)?;
        Ok(live_sessions(rows, limit))
    }

    async fn revoke_live_family(
        &self,
        user_id: UserId,
        family_id: Uuid,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Vec<Uuid>>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // As in `revoke_family`: no rotation adds to the family meanwhile.
        lock_user(&txn, user_id, Lock::Update).await?;
        let live = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
            .filter(sessions::Column::FamilyId.eq(family_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::RotatedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .into_tuple::<Uuid>()
            .one(&txn)
            .await
            .map_err(classify)?;
        if live.is_none() {
            return Ok(None);
        }
        let ids = self.revoke_family_rows(&txn, family_id, now).await?;
        self.commit_with_events(txn, events).await?;
        Ok(Some(ids))
    }
}
