//! Row shapes. Private to the SeaORM adapters: nothing outside
//! `infrastructure::sea_orm` sees them; the repositories convert to domain types.

pub mod known_devices;
pub mod login_throttles;
pub mod mailer_deliveries;
pub mod mfa_challenges;
pub mod outbox;
pub mod recovery_codes;
pub mod sessions;
pub mod single_use_tokens;
pub mod user_event_streams;
pub mod user_totp;
pub mod users;
