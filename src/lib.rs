//! identity: user identity over gRPC — sign-up, email verification, login and
//! PASETO access tokens — on SQLite or PostgreSQL.
//!
//! Layers: `domain` (pure) ← `application` (use cases) ← `infrastructure`
//! (adapters) and `grpc` (transport), wired together in `startup`.

pub mod application;
pub mod cli;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod infrastructure;
pub mod mailer;
pub mod observability;
pub mod startup;
pub mod telemetry;
