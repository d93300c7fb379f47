use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
    sea_query::Expr,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    classify,
    entities::{sessions, users},
    user_lock::{Lock, lock_user, still_matters},
    user_repository::to_user,
};
use crate::domain::{
    AuthMethods, TokenHash, UserId,
    ports::{LoginCommit, NewSession, RepositoryError, Rotation, SessionRecord, SessionRepository},
};

/// Refresh-token sessions in SQL; only the token's digest is stored.
#[derive(Clone)]
pub struct SeaOrmSessionRepository {
    db: DatabaseConnection,
    access_token_lifetime: Option<std::time::Duration>,
}

impl SeaOrmSessionRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, access_token_lifetime: None }
    }

    /// See [`super::SeaOrmUserRepository::with_access_token_lifetime`].
    #[must_use]
    pub fn with_access_token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.access_token_lifetime = Some(lifetime);
        self
    }
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
        amr: Set(Some(session.methods.as_str().to_owned())),
    }
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
        is_rotated: s.rotated_at.is_some(),
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
    ) -> Result<LoginCommit, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
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
        sessions::Entity::insert(row(session)).exec_without_returning(&txn).await.map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(LoginCommit::Created)
    }

    async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, RepositoryError> {
        let found = sessions::Entity::find()
            .filter(sessions::Column::TokenHash.eq(hash.to_hex()))
            .one(&self.db)
            .await
            .map_err(classify)?;
        Ok(found.map(record))
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<SessionRecord>, RepositoryError> {
        Ok(sessions::Entity::find_by_id(id).one(&self.db).await.map_err(classify)?.map(record))
    }

    async fn rotate(
        &self,
        old: &SessionRecord,
        new: &NewSession,
        now: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        // Under the user's lock, a revocation of every session either ran
        // before (and revoked `old`, which the claim below then misses) or
        // waits for this commit (and then sees `new`): no session slips past it.
        let Some(user_row) = lock_user(&txn, old.user_id, Lock::Share).await? else { return Ok(Rotation::Refused) };
        let user = to_user(&user_row)?;
        let is_cut_off = user.tokens_valid_after().is_some_and(|after| old.authenticated_at < after);
        if user.ensure_can_log_in().is_err() || is_cut_off {
            return Ok(Rotation::Refused);
        }
        // The conditional update is the claim: of concurrent rotations of one
        // token exactly one sees a row affected.
        let claimed = sessions::Entity::update_many()
            .col_expr(sessions::Column::RotatedAt, Expr::value(now))
            .filter(sessions::Column::Id.eq(old.id))
            .filter(sessions::Column::RotatedAt.is_null())
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        if claimed.rows_affected != 1 {
            return Ok(Rotation::Lost);
        }
        sessions::Entity::insert(row(new)).exec_without_returning(&txn).await.map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(Rotation::Rotated(user))
    }

    async fn revoke_family(&self, member: &SessionRecord, now: OffsetDateTime) -> Result<Vec<Uuid>, RepositoryError> {
        let family_id = member.family_id;
        let txn = self.db.begin().await.map_err(classify)?;
        // The user's lock keeps a concurrent rotation from adding to the family
        // between the read of its live members and their revocation.
        lock_user(&txn, member.user_id, Lock::Update).await?;
        let still_matters = still_matters(self.access_token_lifetime.map(|lifetime| now - lifetime));
        let ids: Vec<Uuid> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::FamilyId.eq(family_id))
            .filter(still_matters.clone())
            .into_tuple()
            .all(&txn)
            .await
            .map_err(classify)?;
        sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .filter(sessions::Column::FamilyId.eq(family_id))
            .filter(still_matters)
            .exec(&txn)
            .await
            .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(ids)
    }
}
