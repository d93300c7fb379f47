//! The composition root: configuration → adapters → use cases → gRPC services.
//! The only module that sees every layer.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context;
use migration::MigratorTrait;
use sea_orm::DatabaseConnection;
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};

use crate::{
    application::{
        AccessGuard, AdminUsers, ChangePassword, DeliverEmail, GetCurrentUser, Login, Logout, LogoutAll, PasswordRules,
        PruneStaleRecords, RateLimiter, RefreshSession, RequestPasswordReset, ResendVerificationEmail, ResetPassword,
        SessionIssuer, SignUp, ValidateToken, VerifyEmail,
    },
    config::Settings,
    domain::{
        PasswordPolicy, ResendPolicy, ThrottlePolicy,
        ports::{
            AccessTokenIssuer, AccountRepository, Clock, EmailSender, LoginThrottles, PasswordHasher,
            SessionRepository, SingleUseTokens, UserRepository,
        },
    },
    grpc::{
        AdminGrpcService, UserGrpcService,
        call_limits::CallLimits,
        health::{self, ReadinessCheck},
        proto::{admin_service_server::AdminServiceServer, user_service_server::UserServiceServer},
        request_context::RequestContextLayer,
        tls,
    },
    infrastructure::{
        Argon2Hasher, PasetoSettings, PasetoTokens, SystemClock, ZxcvbnMeter,
        email::build_sender,
        outbox::{InProcessEmailPublisher, OutboxPublisher, OutboxRelay},
        rabbitmq::RabbitMqPublisher,
        sea_orm::{
            DatabaseSettings, SeaOrmLoginThrottles, SeaOrmOutboxStore, SeaOrmPruner, SeaOrmSessionRepository,
            SeaOrmUserRepository, connect,
        },
    },
    observability::{Metrics, metrics_server},
};

/// Most verification emails per address per hour.
const RESEND_MAX_PER_HOUR: u32 = 5;
/// Rows of one kind one prune statement deletes, and statements per run: at
/// most 10 000 rows of each kind every `IDENTITY_PRUNE_INTERVAL`.
const PRUNE_BATCH_SIZE: u64 = 500;
const PRUNE_MAX_BATCHES: u32 = 20;
/// How often readiness is re-checked against the database.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);
/// Clock skew tolerated between services when checking token times.
const TOKEN_LEEWAY: Duration = Duration::from_secs(30);
/// ResendVerificationEmail and RequestPasswordReset answer no sooner than this,
/// registered address or not (their database work would otherwise tell).
const ENUMERATION_FLOOR: Duration = Duration::from_millis(150);

/// Replacements for adapters, for tests: a fixed clock, a capturing email sender.
#[derive(Default, Clone)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub email_sender: Option<Arc<dyn EmailSender>>,
}

type ServeFuture = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// A built server, bound to its port but not yet serving.
pub struct Application {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    serve: ServeFuture,
    stop: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

/// Applies pending migrations, all in one transaction. The server and the mailer
/// may start together against one database: on PostgreSQL an advisory lock lets
/// one of them migrate while the other waits; on SQLite the loser of the race gets
/// "database is locked", retries, and finds the work done.
///
/// # Errors
/// A migration failed, repeatedly.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 10;
    let mut attempt = 1;
    loop {
        match migrate_once(db).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %error, "migrations failed; retrying (another process may be migrating)");
                tokio::time::sleep(Duration::from_millis(300)).await;
                attempt += 1;
            }
            Err(error) => return Err(error).context("applying database migrations"),
        }
    }
}

/// An arbitrary constant naming our migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK_ID: i64 = 0x01DE_7177;

async fn migrate_once(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let txn = db.begin().await?;
    if crate::infrastructure::sea_orm::is_postgres(&txn) {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")).await?;
    }
    migration::Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// Opens the database described by the settings.
///
/// # Errors
/// Unreachable database or invalid URL.
pub async fn connect_database(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect(&DatabaseSettings {
        url: settings.database_url.clone(),
        max_connections: settings.database_max_connections,
        acquire_timeout: settings.database_acquire_timeout,
    })
    .await
}

impl Application {
    /// # Errors
    /// Unreachable database, failed migration, invalid key, or the address is taken.
    pub async fn build(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let db = connect_database(&settings).await?;
        if settings.auto_migrate {
            migrate(&db).await?;
        }
        let clock: Arc<dyn Clock> = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let metrics = Arc::new(Metrics::new());
        let outbox_written = Arc::new(Notify::new());
        // Longest an access token lives: revocations need not revisit sessions rotated before that.
        let access_token_lifetime = settings.access_token_ttl + TOKEN_LEEWAY;
        let user_repository = SeaOrmUserRepository::new(db.clone(), Arc::clone(&outbox_written))
            .with_access_token_lifetime(access_token_lifetime);
        let users: Arc<dyn UserRepository> = Arc::new(user_repository.clone());
        let single_use_tokens: Arc<dyn SingleUseTokens> = Arc::new(user_repository.clone());
        let sessions: Arc<dyn SessionRepository> =
            Arc::new(SeaOrmSessionRepository::new(db.clone()).with_access_token_lifetime(access_token_lifetime));
        let hasher: Arc<dyn PasswordHasher> = Arc::new(Argon2Hasher::with_observer(settings.argon2, metrics.clone())?);
        let (paseto, is_ephemeral_key) = PasetoTokens::new(PasetoSettings {
            secret_key: settings.token_secret_key.clone(),
            previous_public_keys: settings.previous_public_keys.clone(),
            issuer: settings.token_issuer.clone(),
            audience: settings.token_audience.clone(),
            access_token_ttl: settings.access_token_ttl,
            leeway: TOKEN_LEEWAY,
        })?;
        if is_ephemeral_key {
            tracing::warn!(
                "IDENTITY_TOKEN_SECRET_KEY is not set: signing with an ephemeral key; tokens stop verifying when the process exits"
            );
        }
        let tokens: Arc<dyn AccessTokenIssuer> = Arc::new(paseto);
        // With a broker, events go to RabbitMQ and the mailer sends them; without,
        // the relay renders and sends them here, through the same senders.
        let publisher: Arc<dyn OutboxPublisher> = match &settings.amqp {
            Some(amqp) => Arc::new(RabbitMqPublisher::new(amqp.url.clone(), amqp.exchange.clone())),
            None => {
                let sender = match overrides.email_sender {
                    Some(sender) => sender,
                    None => {
                        if settings.email.provider == crate::config::EmailProvider::Console {
                            tracing::warn!(
                                "IDENTITY_EMAIL_PROVIDER=console: every verification and password-reset link is written to the log; for development only"
                            );
                        }
                        build_sender(&settings.email, &metrics)?
                    }
                };
                Arc::new(InProcessEmailPublisher { deliver: DeliverEmail { sender } })
            }
        };

        let stop = CancellationToken::new();
        let mut background = Vec::new();
        let relay = OutboxRelay {
            metrics: Arc::clone(&metrics),
            store: SeaOrmOutboxStore::new(db.clone()),
            publisher,
            wake: Arc::clone(&outbox_written),
            clock: Arc::clone(&clock),
            settings: settings.relay,
        };
        background.push(tokio::spawn(relay.run(stop.clone())));
        let pruning = PruneStaleRecords {
            pruner: Arc::new(SeaOrmPruner::new(db.clone(), Arc::clone(&outbox_written))),
            clock: Arc::clone(&clock),
            pending_signup_retention: settings.pending_signup_retention,
            batch_size: PRUNE_BATCH_SIZE,
            max_batches: PRUNE_MAX_BATCHES,
        };
        background.push(tokio::spawn(prune_periodically(pruning, settings.prune_interval, stop.clone())));

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // Known but not serving until the first readiness check passes, so that a
        // probe arriving first gets NOT_SERVING rather than NOT_FOUND.
        for service in ["", health::USER_SERVICE_NAME] {
            health_reporter.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
        }
        let readiness_db = db.clone();
        let readiness: ReadinessCheck = Arc::new(move || {
            let db = readiness_db.clone();
            Box::pin(async move { db.ping().await.is_ok() })
        });
        background.push(tokio::spawn(health::watch_readiness(
            health_reporter,
            readiness,
            READINESS_INTERVAL,
            stop.clone(),
        )));

        let password_rules = PasswordRules {
            policy: PasswordPolicy { min_length: settings.password_min_length },
            // As many strength checks at once as hashes: both are CPU-bound.
            meter: Arc::new(ZxcvbnMeter::new(settings.argon2.max_concurrent, settings.argon2.queue_timeout)),
        };
        let accounts: Arc<dyn AccountRepository> = Arc::new(user_repository.clone());
        let throttles: Arc<dyn LoginThrottles> = Arc::new(SeaOrmLoginThrottles::new(db.clone()));
        let throttle_policy = ThrottlePolicy {
            free_attempts: settings.login_throttle_after,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            hard_cap: ThrottlePolicy::NIST_HARD_CAP,
            hard_cap_window: Duration::from_secs(24 * 3600),
        };
        let resend_policy = ResendPolicy { cooldown: settings.resend_cooldown, max_per_hour: RESEND_MAX_PER_HOUR };
        let guard = Arc::new(AccessGuard::new(
            Arc::clone(&tokens),
            Arc::clone(&users),
            Arc::clone(&sessions),
            Arc::clone(&clock),
            settings.revocation_cache_ttl,
        ));
        let issuer = Arc::new(SessionIssuer {
            tokens: Arc::clone(&tokens),
            clock: Arc::clone(&clock),
            refresh_ttl: settings.refresh_token_ttl,
            max_lifetime: settings.session_max_lifetime,
        });
        let service = UserGrpcService {
            password_rules: password_rules.clone(),
            sign_up: SignUp {
                users: Arc::clone(&users),
                notices: Arc::new(user_repository.clone()),
                notice_policy: resend_policy,
                hasher: Arc::clone(&hasher),
                clock: Arc::clone(&clock),
                links: settings.verification_url.clone(),
                verification_ttl: settings.verification_token_ttl,
                is_enumeration_safe: settings.signup_enumeration_safe,
            },
            verify_email: VerifyEmail {
                users: Arc::clone(&users),
                tokens: Arc::clone(&single_use_tokens),
                clock: Arc::clone(&clock),
            },
            resend_verification_email: ResendVerificationEmail {
                users: Arc::clone(&users),
                tokens: Arc::clone(&single_use_tokens),
                clock: Arc::clone(&clock),
                links: settings.verification_url.clone(),
                verification_ttl: settings.verification_token_ttl,
                policy: resend_policy,
            },
            login: Login {
                users: Arc::clone(&users),
                sessions: Arc::clone(&sessions),
                hasher: Arc::clone(&hasher),
                throttles: Arc::clone(&throttles),
                throttle_policy,
                issuer: Arc::clone(&issuer),
                clock: Arc::clone(&clock),
                is_enumeration_safe: settings.signup_enumeration_safe,
            },
            validate_token: ValidateToken { guard: Arc::clone(&guard) },
            get_current_user: GetCurrentUser { guard: Arc::clone(&guard), users: Arc::clone(&users) },
            refresh_session: RefreshSession {
                sessions: Arc::clone(&sessions),
                issuer,
                guard: Arc::clone(&guard),
                clock: Arc::clone(&clock),
            },
            logout: Logout { sessions: Arc::clone(&sessions), guard: Arc::clone(&guard), clock: Arc::clone(&clock) },
            logout_all: LogoutAll {
                guard: Arc::clone(&guard),
                accounts: Arc::clone(&accounts),
                clock: Arc::clone(&clock),
            },
            change_password: ChangePassword {
                guard: Arc::clone(&guard),
                accounts: Arc::clone(&accounts),
                hasher: Arc::clone(&hasher),
                throttles: Arc::clone(&throttles),
                throttle_policy,
                rules: password_rules.clone(),
                clock: Arc::clone(&clock),
            },
            request_password_reset: RequestPasswordReset {
                users: Arc::clone(&users),
                tokens: Arc::clone(&single_use_tokens),
                clock: Arc::clone(&clock),
                links: settings.password_reset_url.clone(),
                ttl: settings.password_reset_token_ttl,
                policy: resend_policy,
            },
            reset_password: ResetPassword {
                accounts: Arc::clone(&accounts),
                tokens: single_use_tokens,
                hasher,
                throttles,
                guard: Arc::clone(&guard),
                rules: password_rules,
                clock: Arc::clone(&clock),
            },
            tokens,
            limits: CallLimits {
                per_address: RateLimiter::new(settings.rate_limit_per_address),
                per_address_refresh: RateLimiter::new(settings.rate_limit_refresh_per_address),
                per_email: RateLimiter::new(settings.rate_limit_per_email),
                trusted_header: settings.trusted_client_ip_header.clone(),
            },
            enumeration_floor: ENUMERATION_FLOOR,
            metrics: Arc::clone(&metrics),
        };
        let admin = AdminGrpcService::new(
            AdminUsers { users, accounts, guard, clock },
            &settings.admin_api_key_hashes,
            settings.trusted_client_ip_header.clone(),
        );

        let reflection_v1 = reflection_builder().build_v1().context("building the reflection service")?;
        let reflection_v1alpha = reflection_builder().build_v1alpha().context("building the reflection service")?;
        let user_service = UserServiceServer::new(service)
            .max_decoding_message_size(settings.max_message_size)
            .max_encoding_message_size(settings.max_message_size);
        let admin_service = AdminServiceServer::new(admin)
            .max_decoding_message_size(settings.max_message_size)
            .max_encoding_message_size(settings.max_message_size);

        let listener = TcpListener::bind(settings.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on {} (IDENTITY_GRPC_ADDR)", settings.grpc_addr))?;
        let local_addr = listener.local_addr()?;
        let router = Server::builder()
            .layer(RequestContextLayer {
                metrics: Arc::clone(&metrics),
                methods: Arc::new(crate::grpc::served_methods().context("listing the served gRPC methods")?),
            })
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(user_service)
            .add_service(admin_service);
        let serve: ServeFuture = match &settings.tls {
            Some(tls_settings) => {
                let acceptor = tls::acceptor(tls_settings, stop.clone())?;
                tracing::info!(mutual = tls_settings.client_ca_file.is_some(), "gRPC over TLS");
                let incoming = tls::incoming(listener, acceptor, stop.clone());
                Box::pin(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()))
            }
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            )),
        };
        let metrics_addr = match settings.metrics_addr {
            Some(addr) => {
                let listener = metrics_server::bind(addr).await?;
                let bound = listener.local_addr()?;
                background.push(tokio::spawn(metrics_server::serve(listener, metrics, stop.clone())));
                Some(bound)
            }
            None => None,
        };
        tracing::info!(address = %local_addr, metrics = ?metrics_addr, "identity server listening");
        Ok(Self { local_addr, metrics_addr, serve, stop, background })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The port `/metrics` is served on, if it is.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_addr.map(|a| a.port())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Cancelling this token stops the server gracefully: no new calls, in-flight
    /// calls finish, background tasks end.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until the shutdown token is cancelled and every call drained.
    ///
    /// # Errors
    /// The transport failed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.serve.await.context("the gRPC server failed");
        self.stop.cancel();
        for task in self.background {
            let _ = task.await;
        }
        tracing::info!("identity server stopped");
        result
    }
}

/// Runs the pruning every `interval`, the first time one interval after start.
/// Every replica prunes: the deletes are idempotent and batch-limited.
async fn prune_periodically(task: PruneStaleRecords, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = task.execute().await {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::new(error)),
                "pruning failed; will retry at the next interval"
            );
        }
    }
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    crate::grpc::REFLECTED_DESCRIPTOR_SETS
        .iter()
        .fold(tonic_reflection::server::Builder::configure(), |builder, set| {
            builder.register_encoded_file_descriptor_set(set)
        })
}
