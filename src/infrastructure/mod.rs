//! Adapters: the technology behind each port, named after that technology,
//! and the outbox relay that moves committed events to a publisher (in
//! process, or RabbitMQ, whose consumer runs the mailer's use case).

pub mod argon2;
pub mod email;
pub mod in_memory_rate_limits;
pub mod outbox;
pub mod paseto_tokens;
pub mod postgres;
pub mod rabbitmq;
pub mod sea_orm;
pub mod system_clock;
pub mod totp_rs;
pub mod xchacha_cipher;
pub mod zxcvbn_meter;

pub use self::argon2::{Argon2Hasher, Argon2Settings, HashingObserver};
pub use in_memory_rate_limits::InMemoryRateLimits;
pub use paseto_tokens::{PasetoSettings, PasetoTokens};
pub use system_clock::SystemClock;
pub use totp_rs::TotpRs;
pub use xchacha_cipher::{CipherKey, XChaChaCipher};
pub use zxcvbn_meter::ZxcvbnMeter;
