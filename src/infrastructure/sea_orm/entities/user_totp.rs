use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_totp")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Encrypted (see `infrastructure::xchacha_cipher`), never the secret itself.
    pub secret_ciphertext: String,
    pub created_at: TimeDateTimeWithTimeZone,
    pub pending_expires_at: TimeDateTimeWithTimeZone,
    pub confirmed_at: Option<TimeDateTimeWithTimeZone>,
    pub last_step: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
