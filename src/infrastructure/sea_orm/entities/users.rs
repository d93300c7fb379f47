use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub email: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub status: String,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
    pub verified_at: Option<TimeDateTimeWithTimeZone>,
    pub tokens_valid_after: Option<TimeDateTimeWithTimeZone>,
    /// Bumped by every password change or reset.
    pub password_version: i32,
    /// Set while a confirmed TOTP secret makes logins ask for a second factor.
    pub mfa_enabled_at: Option<TimeDateTimeWithTimeZone>,
    /// The key of a user imported from Django whose key was no UUID.
    #[sea_orm(unique)]
    pub legacy_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
