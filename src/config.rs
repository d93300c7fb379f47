//! Configuration from the environment. Every variable is documented in the
//! README; a bad value stops start-up with one line naming the variable.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;

use crate::{
    application::{ExpectedEmails, LinkTemplate},
    domain::{Email, password::MAX_PASSWORD_LENGTH},
    infrastructure::{Argon2Settings, outbox::RelaySettings},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    /// May carry a password, so it is a secret (and `Debug` shows it redacted).
    pub database_url: SecretString,
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    pub auto_migrate: bool,
    pub token_secret_key: Option<SecretString>,
    pub previous_public_keys: Vec<String>,
    pub token_issuer: String,
    pub token_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// However often it is refreshed, a session ends this long after its login.
    pub session_max_lifetime: Duration,
    pub verification_token_ttl: Duration,
    pub password_min_length: usize,
    pub resend_cooldown: Duration,
    pub verification_url: LinkTemplate,
    pub argon2: Argon2Settings,
    pub max_message_size: usize,
    pub log_format: LogFormat,
    pub email: EmailSettings,
    /// Set: the outbox relay publishes to RabbitMQ. Unset: it delivers emails in process.
    pub amqp: Option<AmqpSettings>,
    pub relay: RelaySettings,
    /// How often stale sessions, throttles, tokens and abandoned sign-ups are pruned.
    pub prune_interval: Duration,
    /// How long after their last verification link expired a sign-up that was
    /// never verified is deleted.
    pub pending_signup_retention: Duration,
    pub password_reset_url: LinkTemplate,
    pub password_reset_token_ttl: Duration,
    pub login_throttle_after: u32,
    pub rate_limit_per_address: u32,
    pub rate_limit_per_email: u32,
    /// RefreshSession and Logout, per address: backends refresh for many users.
    pub rate_limit_refresh_per_address: u32,
    /// Metadata header a trusted proxy sets to the caller's address.
    pub trusted_client_ip_header: Option<String>,
    pub signup_enumeration_safe: bool,
    /// Lower-case hex SHA-256 of the accepted admin API keys.
    pub admin_api_key_hashes: Vec<String>,
    /// How long a replica trusts its cached view of a user's token revocations.
    pub revocation_cache_ttl: Duration,
    /// Where Prometheus scrapes `/metrics`; `None` turns the endpoint off.
    pub metrics_addr: Option<SocketAddr>,
    /// TLS on the gRPC listener; `None` serves plaintext (behind a mesh, say).
    pub tls: Option<crate::grpc::tls::TlsSettings>,
}

fn tls_settings<F: Fn(&str) -> Option<String>>(
    env: &Source<F>,
) -> Result<Option<crate::grpc::tls::TlsSettings>, ConfigError> {
    let cert = env.get("IDENTITY_TLS_CERT_FILE");
    let key = env.get("IDENTITY_TLS_KEY_FILE");
    let client_ca = env.get("IDENTITY_TLS_CLIENT_CA_FILE");
    match (cert, key) {
        (None, None) if client_ca.is_some() => Err(error(
            "IDENTITY_TLS_CLIENT_CA_FILE",
            "needs IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE (mutual TLS is TLS)",
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(error("IDENTITY_TLS_KEY_FILE", "is required with IDENTITY_TLS_CERT_FILE")),
        (None, Some(_)) => Err(error("IDENTITY_TLS_CERT_FILE", "is required with IDENTITY_TLS_KEY_FILE")),
        (Some(cert), Some(key)) => Ok(Some(crate::grpc::tls::TlsSettings {
            cert_file: cert.trim().into(),
            key_file: key.trim().into(),
            client_ca_file: client_ca.map(|ca| ca.trim().into()),
            reload_interval: env.positive_duration("IDENTITY_TLS_RELOAD_INTERVAL", Duration::from_secs(30))?,
        })),
    }
}

/// `IDENTITY_LOG_FORMAT`: `json` (the default) or `pretty`; both binaries read it.
///
/// # Errors
/// Anything else.
pub fn log_format<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<LogFormat, ConfigError> {
    match env.string("IDENTITY_LOG_FORMAT", "json").as_str() {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        other => Err(error("IDENTITY_LOG_FORMAT", format!("{other:?} is neither json nor pretty"))),
    }
}

/// `IDENTITY_METRICS_ADDR`: an address, or `off`.
///
/// # Errors
/// Neither.
pub fn metrics_addr<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<Option<SocketAddr>, ConfigError> {
    match env.get("IDENTITY_METRICS_ADDR").map(|v| v.trim().to_owned()) {
        None => Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9464)))),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| error("IDENTITY_METRICS_ADDR", format!("{v:?} is neither host:port nor off"))),
    }
}

/// `IDENTITY_VERIFICATION_URL` and `IDENTITY_PASSWORD_RESET_URL`. The server
/// makes its links from them; the mailer reads the same variables here and sends
/// no other links.
///
/// # Errors
/// A template without the `{token}` placeholder.
pub fn expected_emails<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<ExpectedEmails, ConfigError> {
    Ok(ExpectedEmails {
        verification_links: LinkTemplate::parse(
            &env.string("IDENTITY_VERIFICATION_URL", "http://localhost:3000/verify-email?token={token}"),
        )
        .map_err(|e| error("IDENTITY_VERIFICATION_URL", e))?,
        reset_links: LinkTemplate::parse(
            &env.string("IDENTITY_PASSWORD_RESET_URL", "http://localhost:3000/reset-password?token={token}"),
        )
        .map_err(|e| error("IDENTITY_PASSWORD_RESET_URL", e))?,
    })
}

/// Which provider sends emails, and how to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProvider {
    Console,
    SendGrid,
    Smtp,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub provider: EmailProvider,
    pub from: Email,
    pub sendgrid_api_key: Option<SecretString>,
    pub sendgrid_base_url: String,
    /// May carry credentials, so it is a secret.
    pub smtp_url: Option<SecretString>,
    /// Longest wait for the provider's answer before the attempt counts as failed.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// May carry credentials, so it is a secret.
    pub url: SecretString,
    pub exchange: String,
}

impl EmailSettings {
    /// # Errors
    /// The first invalid variable.
    pub fn from_source<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<Self, ConfigError> {
        let provider = match env.string("IDENTITY_EMAIL_PROVIDER", "console").to_ascii_lowercase().as_str() {
            "console" => EmailProvider::Console,
            "sendgrid" => EmailProvider::SendGrid,
            "smtp" => EmailProvider::Smtp,
            other => {
                return Err(error(
                    "IDENTITY_EMAIL_PROVIDER",
                    format!("{other:?} is not one of sendgrid, smtp, console"),
                ));
            }
        };
        let from = Email::parse(&env.string("IDENTITY_EMAIL_FROM", "no-reply@identity.invalid"))
            .map_err(|e| error("IDENTITY_EMAIL_FROM", format!("not a valid address: {e}")))?;
        let sendgrid_api_key = env.get("SENDGRID_API_KEY").map(|k| SecretString::from(k.trim().to_owned()));
        if provider == EmailProvider::SendGrid && sendgrid_api_key.is_none() {
            return Err(error("SENDGRID_API_KEY", "is required when IDENTITY_EMAIL_PROVIDER=sendgrid"));
        }
        let sendgrid_base_url =
            env.string("SENDGRID_BASE_URL", "https://api.sendgrid.com").trim_end_matches('/').to_owned();
        if !(sendgrid_base_url.starts_with("https://") || sendgrid_base_url.starts_with("http://")) {
            return Err(error("SENDGRID_BASE_URL", "must be an http(s) URL"));
        }
        let smtp_url = env.get("IDENTITY_SMTP_URL").map(|u| SecretString::from(u.trim().to_owned()));
        if provider == EmailProvider::Smtp && smtp_url.is_none() {
            return Err(error("IDENTITY_SMTP_URL", "is required when IDENTITY_EMAIL_PROVIDER=smtp"));
        }
        Ok(Self {
            provider,
            from,
            sendgrid_api_key,
            sendgrid_base_url,
            smtp_url,
            timeout: env.positive_duration("IDENTITY_EMAIL_TIMEOUT", Duration::from_secs(10))?,
        })
    }
}

impl AmqpSettings {
    /// `None` when `IDENTITY_AMQP_URL` is unset.
    ///
    /// # Errors
    /// A URL that is not amqp:// or amqps://.
    pub fn from_source<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("IDENTITY_AMQP_URL") else {
            return Ok(None);
        };
        let url = url.trim().to_owned();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            // The value may hold a password: do not echo it.
            return Err(error("IDENTITY_AMQP_URL", "must start with amqp:// or amqps://"));
        }
        Ok(Some(Self {
            url: SecretString::from(url),
            exchange: env.string("IDENTITY_AMQP_EXCHANGE", "identity.events"),
        }))
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

fn parse_key_hashes(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|hash| {
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                Ok(hash.to_owned())
            } else {
                Err(error(
                    "IDENTITY_ADMIN_API_KEY_HASHES",
                    "each entry must be the lower-case hex SHA-256 of a key (64 characters)",
                ))
            }
        })
        .collect()
}

/// Parses `250ms`, `90s`, `10m`, `24h`, `30d`, or plain seconds.
///
/// # Errors
/// Anything else.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{raw:?} is not a duration such as 90s, 10m, 24h or 30d"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "" | "s" => value,
        "m" => value.saturating_mul(60),
        "h" => value.saturating_mul(3600),
        "d" => value.saturating_mul(86_400),
        _ => return Err(format!("{raw:?} has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Typed reads of configuration variables, with errors that name the variable.
pub struct Source<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Source<F> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, name: &'static str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            Some(raw) => raw.trim().parse().map_err(|e| error(name, format!("{raw:?}: {e}"))),
            None => Ok(default),
        }
    }

    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            Some(raw) => parse_duration(&raw).map_err(|e| error(name, e)),
            None => Ok(default),
        }
    }

    pub fn positive_duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let value = self.duration(name, default)?;
        if value.is_zero() {
            return Err(error(name, "must be greater than zero"));
        }
        Ok(value)
    }

    pub fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(error(name, format!("{v:?} is not a boolean (true or false)"))),
        }
    }
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
        let password_min_length: usize = env.parsed("IDENTITY_PASSWORD_MIN_LENGTH", 12)?;
        if !(8..=MAX_PASSWORD_LENGTH).contains(&password_min_length) {
            return Err(error("IDENTITY_PASSWORD_MIN_LENGTH", format!("must be between 8 and {MAX_PASSWORD_LENGTH}")));
        }
        let links = expected_emails(&env)?;
        let recommended = Argon2Settings::recommended();
        let argon2 = Argon2Settings {
            m_cost: env.parsed("IDENTITY_ARGON2_M_COST", recommended.m_cost)?,
            t_cost: env.parsed("IDENTITY_ARGON2_T_COST", recommended.t_cost)?,
            p_cost: env.parsed("IDENTITY_ARGON2_P_COST", recommended.p_cost)?,
            max_concurrent: env.parsed("IDENTITY_ARGON2_MAX_CONCURRENT", recommended.max_concurrent)?,
            queue_timeout: env.positive_duration("IDENTITY_ARGON2_QUEUE_TIMEOUT", recommended.queue_timeout)?,
        };
        argon2.params().map_err(|e| error("IDENTITY_ARGON2_M_COST", format!("{e} (with the T and P costs given)")))?;
        if argon2.max_concurrent == 0 {
            return Err(error("IDENTITY_ARGON2_MAX_CONCURRENT", "must be at least 1"));
        }
        let log_format = log_format(&env)?;
        let max_message_size: usize = env.parsed("IDENTITY_MAX_MESSAGE_SIZE", 64 * 1024)?;
        if max_message_size < 1024 {
            return Err(error("IDENTITY_MAX_MESSAGE_SIZE", "must be at least 1024 bytes"));
        }
        let secret = env.get("IDENTITY_TOKEN_SECRET_KEY").map(|raw| SecretString::from(raw.trim().to_owned()));
        if let Some(key) = &secret {
            use secrecy::ExposeSecret;
            // Never echo the value: it is the signing key.
            if !key.expose_secret().starts_with("k4.secret.") {
                return Err(error(
                    "IDENTITY_TOKEN_SECRET_KEY",
                    "must be a PASERK k4.secret key (see `identity-server generate-key`)",
                ));
            }
        }
        let previous_public_keys = env
            .get("IDENTITY_PREVIOUS_PUBLIC_KEYS")
            .map(|raw| raw.split(',').map(str::trim).filter(|k| !k.is_empty()).map(ToOwned::to_owned).collect())
            .unwrap_or_default();
        let ttl_access = env.positive_duration("IDENTITY_ACCESS_TOKEN_TTL", Duration::from_secs(600))?;
        let relay_defaults = RelaySettings::default();
        let relay = RelaySettings {
            poll_interval: env.positive_duration("IDENTITY_OUTBOX_POLL_INTERVAL", relay_defaults.poll_interval)?,
            retention: env.positive_duration("IDENTITY_OUTBOX_RETENTION", relay_defaults.retention)?,
            ..relay_defaults
        };
        Ok(Self {
            grpc_addr: env.parsed("IDENTITY_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
            database_url: SecretString::from(env.string("IDENTITY_DATABASE_URL", "sqlite://identity.db?mode=rwc")),
            database_max_connections: env.parsed("IDENTITY_DATABASE_MAX_CONNECTIONS", 10)?,
            database_acquire_timeout: env
                .positive_duration("IDENTITY_DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(5))?,
            auto_migrate: env.boolean("IDENTITY_AUTO_MIGRATE", true)?,
            token_secret_key: secret,
            previous_public_keys,
            token_issuer: env.string("IDENTITY_TOKEN_ISSUER", "identity"),
            token_audience: env.string("IDENTITY_TOKEN_AUDIENCE", "identity"),
            access_token_ttl: ttl_access,
            refresh_token_ttl: env.positive_duration("IDENTITY_REFRESH_TOKEN_TTL", Duration::from_secs(30 * 86_400))?,
            session_max_lifetime: env
                .positive_duration("IDENTITY_SESSION_MAX_LIFETIME", Duration::from_secs(90 * 86_400))?,
            verification_token_ttl: env
                .positive_duration("IDENTITY_VERIFICATION_TOKEN_TTL", Duration::from_secs(86_400))?,
            password_min_length,
            resend_cooldown: env.duration("IDENTITY_RESEND_COOLDOWN", Duration::from_secs(60))?,
            verification_url: links.verification_links,
            argon2,
            max_message_size,
            log_format,
            email: EmailSettings::from_source(&env)?,
            amqp: AmqpSettings::from_source(&env)?,
            relay,
            prune_interval: env.positive_duration("IDENTITY_PRUNE_INTERVAL", Duration::from_secs(600))?,
            pending_signup_retention: env
                .positive_duration("IDENTITY_PENDING_SIGNUP_RETENTION", Duration::from_secs(7 * 86_400))?,
            password_reset_url: links.reset_links,
            password_reset_token_ttl: env
                .positive_duration("IDENTITY_PASSWORD_RESET_TOKEN_TTL", Duration::from_secs(3600))?,
            login_throttle_after: env.parsed("IDENTITY_LOGIN_THROTTLE_AFTER", 5)?,
            rate_limit_per_address: env.parsed("IDENTITY_RATE_LIMIT_PER_ADDRESS", 60)?,
            rate_limit_per_email: env.parsed("IDENTITY_RATE_LIMIT_PER_EMAIL", 20)?,
            rate_limit_refresh_per_address: env.parsed("IDENTITY_RATE_LIMIT_REFRESH_PER_ADDRESS", 600)?,
            trusted_client_ip_header: env
                .get("IDENTITY_TRUSTED_CLIENT_IP_HEADER")
                .map(|h| h.trim().to_ascii_lowercase()),
            signup_enumeration_safe: env.boolean("IDENTITY_SIGNUP_ENUMERATION_SAFE", false)?,
            admin_api_key_hashes: parse_key_hashes(env.get("IDENTITY_ADMIN_API_KEY_HASHES"))?,
            revocation_cache_ttl: env.duration("IDENTITY_REVOCATION_CACHE_TTL", Duration::from_secs(5))?,
            metrics_addr: metrics_addr(&env)?,
            tls: tls_settings(&env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_need_no_environment() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&settings.database_url), "sqlite://identity.db?mode=rwc");
        assert_eq!(settings.access_token_ttl, Duration::from_secs(600));
        assert_eq!(settings.argon2.m_cost, 19_456);
        assert!(settings.token_secret_key.is_none());
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
        assert_eq!(settings.amqp.unwrap().exchange, "identity.events");
    }

    #[test]
    fn admin_key_hashes_must_be_sha256_hex() {
        assert!(with(&[]).unwrap().admin_api_key_hashes.is_empty());
        let hash = "a".repeat(64);
        assert_eq!(
            with(&[("IDENTITY_ADMIN_API_KEY_HASHES", &format!("{hash}, {hash}"))]).unwrap().admin_api_key_hashes.len(),
            2
        );
        let error = with(&[("IDENTITY_ADMIN_API_KEY_HASHES", "my-plain-key")]).unwrap_err();
        assert_eq!(error.variable, "IDENTITY_ADMIN_API_KEY_HASHES");
        assert!(!error.to_string().contains("my-plain-key"));
    }

    #[test]
    fn debug_output_of_the_settings_hides_the_database_password() {
        let settings = with(&[("IDENTITY_DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&settings.database_url), "postgres://u:hunter2@h/db");
        let debug = format!("{settings:?}");
        assert!(debug.contains("database_url"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn pruning_runs_every_ten_minutes_and_keeps_abandoned_sign_ups_a_week() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.prune_interval, Duration::from_secs(600));
        assert_eq!(settings.pending_signup_retention, Duration::from_secs(7 * 86_400));
        let settings =
            with(&[("IDENTITY_PRUNE_INTERVAL", "1h"), ("IDENTITY_PENDING_SIGNUP_RETENTION", "30d")]).unwrap();
        assert_eq!(settings.prune_interval, Duration::from_secs(3600));
        assert_eq!(settings.pending_signup_retention, Duration::from_secs(30 * 86_400));
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
        assert!(expected.verification_links.matches(server.verification_url.link_for(&token).expose_secret()));
        assert!(expected.reset_links.matches(server.password_reset_url.link_for(&token).expose_secret()));
    }

    #[test]
    fn a_zero_resend_cooldown_is_allowed() {
        assert_eq!(with(&[("IDENTITY_RESEND_COOLDOWN", "0")]).unwrap().resend_cooldown, Duration::ZERO);
    }
}
