//! The outbox's wire form: how domain events are stored, published and read
//! back. The relay that moves them lives in `workers`.

pub mod payload;
