//! The outbox's stored forms: versioned JSON for emails, protobuf for the
//! user events other services consume. The relay that moves them lives in
//! `workers`.

pub mod payload;
pub mod user_events;
