//! Integration tests: the real server on port 0, a fresh SQLite file or
//! PostgreSQL database per test, driven through the generated gRPC client.

mod helpers;
mod pipeline_helpers;
mod process_logs;
mod tcp_proxy;
mod tls;

mod abuse;
mod admin;
mod django_import;
mod django_passwords;
mod email_change;
mod email_pipeline;
mod email_safety;
mod faults;
mod hash_lookups;
mod health_and_reflection;
mod hostile_input;
mod login;
mod observability;
mod passwords;
mod pruning;
mod races;
mod refresh_grace;
mod replicas;
mod resend_verification;
mod security;
mod security_notices;
mod session_list;
mod sessions;
mod sign_up;
mod smtp_sender;
mod sqlite_sharing;
mod statements;
mod token_migration;
mod tokens;
mod two_factor;
mod unavailable_database;
mod user_events;
mod verify_email;
