//! What only PostgreSQL offers: budgets and revocation notices shared by every
//! replica of one database.

mod rate_limits;
mod revocations;

pub use rate_limits::PostgresRateLimits;
pub use revocations::{APPLICATION_NAME, CHANNEL, PostgresRevocationBroadcast, listen_for_revocations};
