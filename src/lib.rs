//! identity: user identity over gRPC — sign-up, email verification, login and
//! PASETO access tokens — on SQLite or PostgreSQL.
//!
//! Layers: `domain` (pure) ← `application` (use cases) ← `infrastructure`
//! (adapters), `grpc` (transport, driving use cases from requests) and
//! `workers` (driving them from outside a request), wired together in `startup`.

pub mod application;
pub mod cli;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod import;
pub mod infrastructure;
pub mod observability;
pub mod startup;
pub mod telemetry;
pub mod workers;
