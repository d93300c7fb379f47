//! Row shapes. Private to the SeaORM adapters: nothing outside
//! `infrastructure::sea_orm` sees them; the repositories convert to domain types.

pub mod login_throttles;
pub mod mailer_deliveries;
pub mod outbox;
pub mod password_reset_tokens;
pub mod sessions;
pub mod users;
pub mod verification_tokens;
