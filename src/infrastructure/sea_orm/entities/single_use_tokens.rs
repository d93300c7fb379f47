use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "single_use_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// [`crate::domain::ports::TokenPurpose::as_str`].
    pub purpose: String,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_at: TimeDateTimeWithTimeZone,
    pub expires_at: TimeDateTimeWithTimeZone,
    pub spent_at: Option<TimeDateTimeWithTimeZone>,
    /// Presentations counted before checking (ResetPassword calls).
    pub attempts: i32,
    /// The address an email-change token confirms (canonical).
    pub new_email: Option<String>,
    /// The session that asked for an email change: its login survives it.
    pub session_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
