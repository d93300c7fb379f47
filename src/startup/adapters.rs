//! The server's adapters: one of each port, built from the settings.

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use super::Overrides;
use crate::{
    application::DeliverEmail,
    config::MfaSettings,
    config::{Settings, TokenSettings},
    domain::ports::{
        AccessTokenIssuer, AccountRepository, Clock, LoginThrottles, MfaRepository, NoOtherReplicas, OutboxPublisher,
        OutboxStore, PasswordHasher, RateLimitStore, RegistrationNotices, RevocationBroadcast, SecretCipher,
        SessionRepository, SingleUseTokens, TotpAlgorithm, UserRepository,
    },
    infrastructure::{
        Argon2Hasher, InMemoryRateLimits, PasetoSettings, PasetoTokens, TotpRs, XChaChaCipher,
        postgres::{PostgresRateLimits, PostgresRevocationBroadcast},
        rabbitmq::RabbitMqPublisher,
        sea_orm::{
            SeaOrmLoginThrottles, SeaOrmOutboxStore, SeaOrmSessionRepository, SeaOrmUserRepository, connect_readers,
            has_totp_secrets, is_postgres,
        },
    },
    observability::Metrics,
    workers::{InProcessEmailPublisher, UnheardEvents},
};

/// Clock skew tolerated between services when checking token times.
const TOKEN_LEEWAY: Duration = Duration::from_secs(30);

pub(super) struct Adapters {
    pub db: DatabaseConnection,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Signalled by the repositories after each commit that wrote an outbox
    /// event: wakes the relay.
    pub outbox_written: Arc<Notify>,
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub notices: Arc<dyn RegistrationNotices>,
    pub sessions: Arc<dyn SessionRepository>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub single_use_tokens: Arc<dyn SingleUseTokens>,
    pub mfa: Arc<dyn MfaRepository>,
    /// `None` without `IDENTITY_MFA_ENCRYPTION_KEY`.
    pub secret_cipher: Option<Arc<dyn SecretCipher>>,
    pub totp: Arc<dyn TotpAlgorithm>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub outbox: Arc<dyn OutboxStore>,
    pub publisher: Arc<dyn OutboxPublisher>,
    /// The user events' rows, and where they go: relayed on their own, so that
    /// emails and events never wait behind each other.
    pub event_outbox: Arc<dyn OutboxStore>,
    pub event_publisher: Arc<dyn OutboxPublisher>,
    /// Call budgets: every replica's on PostgreSQL (unless
    /// `IDENTITY_RATE_LIMITS_SHARED=false`), this replica's otherwise.
    pub rate_limits: Arc<dyn RateLimitStore>,
    /// This replica's budgets, for whenever `rate_limits` cannot answer.
    pub local_rate_limits: Arc<dyn RateLimitStore>,
    /// The shared budgets' table, swept of budgets back to full (PostgreSQL).
    pub shared_rate_limits: Option<PostgresRateLimits>,
    /// Where revocations made here are told to the other replicas.
    pub revocations: Arc<dyn RevocationBroadcast>,
}

impl Adapters {
    /// # Errors
    /// Unreachable database, failed migration, invalid key or argon2 parameters,
    /// or an email provider that cannot be built.
    pub async fn build(settings: &Settings, overrides: &Overrides) -> anyhow::Result<Self> {
        let db = super::open_database(&settings.database).await?;
        let reads = connect_readers(&settings.database, &db).await?;
        let metrics = Arc::new(Metrics::new());
        let outbox_written = Arc::new(Notify::new());
        // Longest an access token lives: revocations need not revisit sessions rotated before that.
        let access_token_lifetime = settings.tokens.access_token_ttl + TOKEN_LEEWAY;
        let repository = SeaOrmUserRepository::new(db.clone(), Arc::clone(&outbox_written))
            .with_readers(reads.clone())
            .with_access_token_lifetime(access_token_lifetime);
        let hasher: Arc<dyn PasswordHasher> =
            Arc::new(Argon2Hasher::with_observer(settings.passwords.argon2, metrics.clone())?);
        let secret_cipher = secret_cipher(&settings.mfa, &db).await?;
        let local_rate_limits: Arc<dyn RateLimitStore> = Arc::new(InMemoryRateLimits::default());
        let is_postgres = is_postgres(&db);
        let shared_rate_limits = (is_postgres && settings.limits.shared).then(|| PostgresRateLimits::new(db.clone()));
        let revocations: Arc<dyn RevocationBroadcast> = if is_postgres {
            Arc::new(PostgresRevocationBroadcast::new(db.clone()))
        } else {
            Arc::new(NoOtherReplicas)
        };
        Ok(Self {
            rate_limits: match &shared_rate_limits {
                Some(shared) => Arc::new(shared.clone()),
                None => local_rate_limits.clone(),
            },
            local_rate_limits,
            shared_rate_limits,
            revocations,
            mfa: Arc::new(repository.clone()),
            secret_cipher,
            totp: Arc::new(TotpRs),
            clock: overrides.clock(),
            users: Arc::new(repository.clone()),
            accounts: Arc::new(repository.clone()),
            notices: Arc::new(repository.clone()),
            sessions: Arc::new(
                SeaOrmSessionRepository::new(db.clone(), Arc::clone(&outbox_written))
                    .with_readers(reads)
                    .with_access_token_lifetime(access_token_lifetime),
            ),
            throttles: Arc::new(SeaOrmLoginThrottles::new(db.clone())),
            hasher,
            single_use_tokens: Arc::new(repository.clone()),
            tokens: token_issuer(&settings.tokens)?,
            outbox: Arc::new(SeaOrmOutboxStore::new(db.clone())),
            publisher: outbox_publisher(settings, overrides, &metrics)?,
            event_outbox: Arc::new(SeaOrmOutboxStore::user_events(db.clone())),
            event_publisher: event_publisher(settings),
            db,
            metrics,
            outbox_written,
        })
    }
}

/// The key for TOTP secrets. Without one, nobody can enrol; and if anyone has,
/// the server would lock them out of their accounts, so it refuses to start.
async fn secret_cipher(
    settings: &MfaSettings,
    db: &DatabaseConnection,
) -> anyhow::Result<Option<Arc<dyn SecretCipher>>> {
    match &settings.encryption_key {
        Some(key) => Ok(Some(Arc::new(XChaChaCipher::new(key, settings.previous_encryption_key.as_deref())))),
        None if has_totp_secrets(db).await? => anyhow::bail!(
            "IDENTITY_MFA_ENCRYPTION_KEY is not set, but users have two-factor login set up: without the key their \
             TOTP secrets cannot be read and they cannot log in; set it to the key they were enrolled with"
        ),
        None => {
            tracing::info!("IDENTITY_MFA_ENCRYPTION_KEY is not set: two-factor enrolment is off");
            Ok(None)
        }
    }
}

fn token_issuer(settings: &TokenSettings) -> anyhow::Result<Arc<dyn AccessTokenIssuer>> {
    let (paseto, is_ephemeral_key) = PasetoTokens::new(PasetoSettings {
        secret_key: settings.secret_key.clone(),
        previous_public_keys: settings.previous_public_keys.clone(),
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        access_token_ttl: settings.access_token_ttl,
        leeway: TOKEN_LEEWAY,
    })?;
    if is_ephemeral_key {
        tracing::warn!(
            "IDENTITY_TOKEN_SECRET_KEY is not set: signing with an ephemeral key; tokens stop verifying when the process exits"
        );
    }
    Ok(Arc::new(paseto))
}

/// With a broker, user events go to their exchange; without, nobody can hear
/// them, and they are settled as they come.
fn event_publisher(settings: &Settings) -> Arc<dyn OutboxPublisher> {
    match &settings.amqp {
        Some(amqp) => Arc::new(RabbitMqPublisher::for_user_events(
            amqp.url.clone(),
            amqp.events_exchange.clone(),
            amqp.events_source.clone(),
        )),
        None => Arc::new(UnheardEvents),
    }
}

/// With a broker, events go to RabbitMQ and the mailer sends them; without, the
/// relay renders and sends them here, through the same senders.
fn outbox_publisher(
    settings: &Settings,
    overrides: &Overrides,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<dyn OutboxPublisher>> {
    Ok(match &settings.amqp {
        Some(amqp) => Arc::new(RabbitMqPublisher::new(amqp.url.clone(), amqp.exchange.clone())),
        None => {
            let sender = overrides.email_sender(&settings.email, metrics)?;
            Arc::new(InProcessEmailPublisher { deliver: DeliverEmail { sender } })
        }
    })
}
