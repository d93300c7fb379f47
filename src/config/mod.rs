//! Configuration from the environment, in sections: each section is parsed by
//! its own function from the same [`Source`], and the sections both binaries
//! need (database, email, links, amqp, telemetry) are read by the same code.
//! Every variable is documented in the README; a bad value stops start-up with
//! one line naming the variable.
//!
//! Dependencies point one way: configuration builds the settings types of the
//! adapters and workers (`infrastructure`, `grpc::tls`, `telemetry`, `workers`);
//! they know nothing of it.

mod amqp;
mod background;
mod database;
mod email;
mod limits;
mod links;
mod mailer;
mod mfa;
mod notices;
mod passwords;
mod server;
mod source;
mod telemetry;
mod tls;
mod tokens;

pub use amqp::{AmqpSettings, amqp};
pub use background::{PruningSettings, outbox, pruning};
pub use database::database;
pub use email::email;
pub use limits::{LimitSettings, limits};
pub use links::{LinkSettings, expected_emails, links};
pub use mailer::{ConsumerSettings, MailerSettings};
pub use mfa::{MfaSettings, mfa};
pub use notices::notices;
pub use passwords::{PasswordSettings, passwords};
pub use server::{ServerSettings, server};
pub use source::{Source, parse_duration};
pub use telemetry::{TelemetryDefaults, TelemetrySettings, telemetry};
pub use tls::tls;
pub use tokens::{TokenSettings, tokens};

use crate::{
    grpc::tls::TlsSettings,
    infrastructure::{email::EmailSettings, sea_orm::DatabaseSettings},
    workers::RelaySettings,
};

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub tokens: TokenSettings,
    pub mfa: MfaSettings,
    pub passwords: PasswordSettings,
    pub links: LinkSettings,
    pub email: EmailSettings,
    /// Set: the outbox relay publishes to RabbitMQ. Unset: it delivers emails in process.
    pub amqp: Option<AmqpSettings>,
    pub outbox: RelaySettings,
    pub pruning: PruningSettings,
    pub limits: LimitSettings,
    /// Which security notices are emailed.
    pub notices: crate::application::Notices,
    pub telemetry: TelemetrySettings,
    /// TLS on the gRPC listener; `None` serves plaintext (behind a mesh, say).
    pub tls: Option<TlsSettings>,
}

impl Settings {
    /// # Errors
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process
    /// environment (which many test servers share).
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Source(lookup);
        let tokens = tokens(&env)?;
        Ok(Self {
            server: server(&env)?,
            database: database(&env)?,
            mfa: mfa(&env, &tokens.issuer)?,
            tokens,
            passwords: passwords(&env)?,
            links: links(&env)?,
            email: email(&env)?,
            amqp: amqp(&env)?,
            outbox: outbox(&env)?,
            pruning: pruning(&env)?,
            limits: limits(&env)?,
            notices: notices(&env)?,
            telemetry: telemetry(&env, TelemetryDefaults::SERVER)?,
            tls: tls(&env)?,
        })
    }
}

/// A configuration error: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

pub fn error(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { variable, message: message.into() }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::infrastructure::email::EmailProvider;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_need_no_environment() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.server.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&settings.database.url), "sqlite://identity.db?mode=rwc");
        assert_eq!(settings.tokens.access_token_ttl, Duration::from_secs(600));
        assert_eq!(settings.passwords.argon2.m_cost, 19_456);
        assert!(settings.tokens.secret_key.is_none());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn errors_name_the_variable() {
        let error = with(&[("IDENTITY_ACCESS_TOKEN_TTL", "soon")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_ACCESS_TOKEN_TTL");
        let error = with(&[("IDENTITY_GRPC_ADDR", "nowhere")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_GRPC_ADDR");
        let error = with(&[("IDENTITY_VERIFICATION_URL", "https://x.example/verify")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_VERIFICATION_URL");
        let error = with(&[("IDENTITY_ARGON2_M_COST", "1")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_ARGON2_M_COST");
    }

    #[test]
    fn the_mfa_key_is_32_bytes_of_base64_never_echoed_and_the_issuer_defaults_to_the_token_issuer() {
        let settings = with(&[("IDENTITY_TOKEN_ISSUER", "acme")]).unwrap();
        assert!(settings.mfa.encryption_key.is_none());
        assert_eq!(settings.mfa.issuer, "acme");
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let settings = with(&[("IDENTITY_MFA_ENCRYPTION_KEY", key), ("IDENTITY_MFA_ISSUER", "Acme Login")]).unwrap();
        assert!(settings.mfa.encryption_key.is_some());
        assert_eq!(settings.mfa.issuer, "Acme Login");
        assert!(!format!("{settings:?}").contains(key));
        let error = with(&[("IDENTITY_MFA_ENCRYPTION_KEY", "c2hvcnQta2V5LXZhbHVl")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_MFA_ENCRYPTION_KEY");
        assert!(!error.to_string().contains("c2hvcnQta2V5LXZhbHVl"));
        let error = with(&[("IDENTITY_MFA_PREVIOUS_ENCRYPTION_KEY", key)]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_MFA_ENCRYPTION_KEY");
    }

    #[test]
    fn the_secret_key_is_never_echoed() {
        let error = with(&[("IDENTITY_TOKEN_SECRET_KEY", "super-secret-value")]).unwrap_err();
        assert!(!error.to_string().contains("super-secret-value"));
    }

    #[test]
    fn email_providers_need_their_credentials() {
        assert_eq!(with(&[]).unwrap().email.provider, EmailProvider::Console);
        let error = with(&[("IDENTITY_EMAIL_PROVIDER", "sendgrid")]).unwrap_err();
        assert_eq!(error.variable, "SENDGRID_API_KEY");
        let error = with(&[("IDENTITY_EMAIL_PROVIDER", "smtp")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_SMTP_URL");
        let error = with(&[("IDENTITY_EMAIL_PROVIDER", "pigeon")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_EMAIL_PROVIDER");
        let settings = with(&[("IDENTITY_EMAIL_PROVIDER", "sendgrid"), ("SENDGRID_API_KEY", "SG.x")]).unwrap();
        assert_eq!(settings.email.sendgrid_base_url, "https://api.sendgrid.com");
    }

    #[test]
    fn amqp_urls_are_checked_without_echoing_them() {
        assert!(with(&[]).unwrap().amqp.is_none());
        let error = with(&[("IDENTITY_AMQP_URL", "http://user:hunter2@host")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_AMQP_URL");
        assert!(!error.to_string().contains("hunter2"));
        let settings = with(&[("IDENTITY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")]).unwrap();
        let amqp = settings.amqp.unwrap();
        assert_eq!((amqp.exchange.as_str(), amqp.events_exchange.as_str()), ("identity.events", "identity.events"));
        assert_eq!(amqp.events_source, "/identity");
        let apart = with(&[
            ("IDENTITY_AMQP_URL", "amqp://127.0.0.1"),
            ("IDENTITY_EVENTS_EXCHANGE", "users"),
            ("IDENTITY_EVENTS_SOURCE", "https://id.example.com"),
        ])
        .unwrap()
        .amqp
        .unwrap();
        assert_eq!((apart.events_exchange.as_str(), apart.events_source.as_str()), ("users", "https://id.example.com"));
    }

    #[test]
    fn admin_key_hashes_must_be_sha256_hex() {
        assert!(with(&[]).unwrap().server.admin_api_key_hashes.is_empty());
        let hash = "a".repeat(64);
        assert_eq!(
            with(&[("IDENTITY_ADMIN_API_KEY_HASHES", &format!("{hash}, {hash}"))])
                .unwrap()
                .server
                .admin_api_key_hashes
                .len(),
            2
        );
        let error = with(&[("IDENTITY_ADMIN_API_KEY_HASHES", "my-plain-key")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_ADMIN_API_KEY_HASHES");
        assert!(!error.to_string().contains("my-plain-key"));
    }

    #[test]
    fn debug_output_of_the_settings_hides_the_database_password() {
        let settings = with(&[("IDENTITY_DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&settings.database.url), "postgres://u:hunter2@h/db");
        let debug = format!("{settings:?}");
        assert!(debug.contains("database: DatabaseSettings { url:"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn pruning_runs_every_ten_minutes_and_keeps_abandoned_sign_ups_a_week() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.pruning.interval, Duration::from_secs(600));
        assert_eq!(settings.pruning.pending_signup_retention, Duration::from_secs(7 * 86_400));
        let settings =
            with(&[("IDENTITY_PRUNE_INTERVAL", "1h"), ("IDENTITY_PENDING_SIGNUP_RETENTION", "30d")]).unwrap();
        assert_eq!(settings.pruning.interval, Duration::from_secs(3600));
        assert_eq!(settings.pruning.pending_signup_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(with(&[("IDENTITY_PRUNE_INTERVAL", "0")]).unwrap_err().variable, "IDENTITY_PRUNE_INTERVAL");
    }

    #[test]
    fn the_mailer_expects_the_links_the_server_makes() {
        let pairs = [("IDENTITY_VERIFICATION_URL", "https://app.example/v?t={token}")];
        let server = with(&pairs).unwrap();
        let expected =
            expected_emails(&Source(|name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())))
                .unwrap();
        let token = crate::domain::OpaqueToken::generate();
        use secrecy::ExposeSecret;
        assert!(expected.verification_links.matches(server.links.verification_url.link_for(&token).expose_secret()));
        assert!(expected.reset_links.matches(server.links.password_reset_url.link_for(&token).expose_secret()));
    }

    #[test]
    fn notices_are_on_but_the_new_device_one_and_each_can_be_switched() {
        let notices = with(&[]).unwrap().notices;
        assert_eq!((notices.password_changed, notices.email_changed, notices.new_device), (true, true, false));
        let notices = with(&[
            ("IDENTITY_NOTIFY_PASSWORD_CHANGED", "false"),
            ("IDENTITY_NOTIFY_EMAIL_CHANGED", "false"),
            ("IDENTITY_NOTIFY_NEW_DEVICE", "true"),
        ])
        .unwrap()
        .notices;
        assert_eq!((notices.password_changed, notices.email_changed, notices.new_device), (false, false, true));
        assert_eq!(
            with(&[("IDENTITY_NOTIFY_NEW_DEVICE", "maybe")]).unwrap_err().variable,
            "IDENTITY_NOTIFY_NEW_DEVICE"
        );
    }

    #[test]
    fn a_zero_resend_cooldown_is_allowed() {
        assert_eq!(with(&[("IDENTITY_RESEND_COOLDOWN", "0")]).unwrap().limits.resend_cooldown, Duration::ZERO);
    }

    #[test]
    fn the_mailer_and_the_server_serve_metrics_on_different_default_ports() {
        let mailer = MailerSettings::from_lookup(|name| {
            (name == "IDENTITY_AMQP_URL").then(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
        })
        .unwrap();
        assert_eq!(mailer.telemetry.metrics_addr, Some("127.0.0.1:9465".parse().unwrap()));
        assert_eq!(with(&[]).unwrap().telemetry.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(with(&[("IDENTITY_METRICS_ADDR", "off")]).unwrap().telemetry.metrics_addr.is_none());
    }

    #[test]
    fn traces_go_to_the_otlp_endpoint_under_the_binary_name_unless_one_is_given() {
        assert!(with(&[]).unwrap().telemetry.otlp.is_none());
        let otlp = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap().telemetry.otlp.unwrap();
        assert_eq!((otlp.endpoint.as_str(), otlp.service_name.as_str()), ("http://c:4317", "identity-server"));
        let otlp = with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ("OTEL_SERVICE_NAME", "edge-identity"),
        ])
        .unwrap()
        .telemetry
        .otlp
        .unwrap();
        assert_eq!((otlp.endpoint.as_str(), otlp.service_name.as_str()), ("http://t:4317", "edge-identity"));
    }
}
