//! identity: user identity over gRPC — sign-up, email verification, login and
//! PASETO access tokens — on SQLite or PostgreSQL.
//!
//! Layers: `domain` (values, entities, events and the ports) ← `application`
//! (use cases, which see only the ports) ← `grpc` (transport) and
//! `infrastructure` (adapters), wired together in `startup` and `mailer`.
//! Adapters implement the domain's ports, but they do not depend only inward
//! on it: the outbox's in-process publisher and the RabbitMQ consumer drive
//! use cases (`DeliverEmail`, `HandleEmailEvent`), and several adapters report
//! to `observability` and read `config` types. `.ci/check-layers` keeps
//! `domain` and `application` free of infrastructure crates.

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
