//! The devices a user has logged in from, remembered in a login's transaction
//! so that a new one is noticed once (see `DeviceSighting`).

use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::{classify, entities::known_devices, outbox_store};
use crate::domain::ports::{DeviceSighting, MAX_KNOWN_DEVICES, RepositoryError};

/// Records the sighting; writes its notice when the device is new to a user
/// who had logged in before (a first login is nobody's new device, and neither
/// is the first one after notices were switched on).
///
/// Two logins from one new device at once: the primary key lets one insert
/// win and the other do nothing, so the notice is written once.
pub(super) async fn remember(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    sighting: &DeviceSighting,
) -> Result<(), RepositoryError> {
    let fingerprint = sighting.fingerprint.to_hex();
    let is_known_user = known_devices::Entity::find()
        .filter(known_devices::Column::UserId.eq(user_id))
        .one(txn)
        .await
        .map_err(classify)?
        .is_some();
    let inserted = known_devices::Entity::insert(known_devices::ActiveModel {
        user_id: Set(user_id),
        fingerprint: Set(fingerprint.clone()),
        first_seen_at: Set(sighting.seen_at),
        last_seen_at: Set(sighting.seen_at),
    })
    .on_conflict(
        OnConflict::columns([known_devices::Column::UserId, known_devices::Column::Fingerprint])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(classify)?;
    if inserted == 0 {
        // Seen before: only ever later, so the newest sightings survive the cap.
        known_devices::Entity::update_many()
            .col_expr(known_devices::Column::LastSeenAt, Expr::value(sighting.seen_at))
            .filter(known_devices::Column::UserId.eq(user_id))
            .filter(known_devices::Column::Fingerprint.eq(fingerprint))
            .filter(known_devices::Column::LastSeenAt.lt(sighting.seen_at))
            .exec(txn)
            .await
            .map_err(classify)?;
        return Ok(());
    }
    if is_known_user {
        outbox_store::insert_event(txn, &sighting.notice).await?;
    }
    forget_beyond_cap(txn, user_id).await
}

/// Keeps a user's newest [`MAX_KNOWN_DEVICES`]: someone who knows the password
/// and varies the user agent must not grow the table without bound (the
/// forgotten devices are the ones unused the longest).
async fn forget_beyond_cap(txn: &DatabaseTransaction, user_id: Uuid) -> Result<(), RepositoryError> {
    let stale: Vec<String> = known_devices::Entity::find()
        .select_only()
        .column(known_devices::Column::Fingerprint)
        .filter(known_devices::Column::UserId.eq(user_id))
        .order_by_desc(known_devices::Column::LastSeenAt)
        .offset(MAX_KNOWN_DEVICES)
        .limit(16)
        .into_tuple()
        .all(txn)
        .await
        .map_err(classify)?;
    if stale.is_empty() {
        return Ok(());
    }
    known_devices::Entity::delete_many()
        .filter(known_devices::Column::UserId.eq(user_id))
        .filter(known_devices::Column::Fingerprint.is_in(stale))
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(())
}
