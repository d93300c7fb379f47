//! The server's composition root: adapters → use cases → gRPC services →
//! background tasks → serve.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::server::HealthReporter;

use super::{Overrides, adapters::Adapters, use_cases::UseCases};
use crate::{
    application::{PruneStaleRecords, RateLimiter},
    config::Settings,
    grpc::{
        AdminGrpcService, UserGrpcService,
        call_limits::CallLimits,
        health::{self, ReadinessCheck},
        proto::{admin_service_server::AdminServiceServer, user_service_server::UserServiceServer},
        request_context::RequestContextLayer,
        tls,
    },
    infrastructure::{
        postgres::{PostgresRateLimits, listen_for_revocations},
        sea_orm::{SeaOrmPruner, is_postgres},
    },
    observability::{Metrics, metrics_server},
    workers::{OutboxRelay, prune_periodically},
};

/// Rows of one kind one prune statement deletes, and statements per run: at
/// most 10 000 rows of each kind every `IDENTITY_PRUNE_INTERVAL`.
const PRUNE_BATCH_SIZE: u64 = 500;
const PRUNE_MAX_BATCHES: u32 = 20;
/// How often the shared budgets' rows back to full are deleted, and how many
/// per statement.
const RATE_LIMIT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const RATE_LIMIT_SWEEP_BATCH: u64 = 5_000;
/// How often readiness is re-checked against the database.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);
/// ResendVerificationEmail and RequestPasswordReset answer no sooner than this,
/// registered address or not (their database work would otherwise tell).
const ENUMERATION_FLOOR: Duration = Duration::from_millis(150);

type ServeFuture = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// A built server, bound to its port but not yet serving.
pub struct Application {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    serve: ServeFuture,
    stop: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// # Errors
    /// Unreachable database, failed migration, invalid key, or the address is taken.
    pub async fn build(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let adapters = Adapters::build(&settings, &overrides).await?;
        let use_cases = UseCases::build(&adapters, &settings);
        let guard = use_cases.guard.clone();
        let routes = grpc_services(use_cases, &adapters, &settings)?;
        let stop = CancellationToken::new();
        let mut background = spawn_background_tasks(&adapters, &settings, &stop);
        if let Some(shared) = adapters.shared_rate_limits.clone() {
            background.push(tokio::spawn(sweep_rate_limits(shared, stop.clone())));
        }
        if is_postgres(&adapters.db) {
            let listener = listen_for_revocations(&settings.database.url, guard, stop.clone()).await?;
            background.push(tokio::spawn(listener));
        }
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        background.push(watch_readiness(health_reporter, adapters.db.clone(), &stop).await);
        let (local_addr, serve) =
            serve_grpc(routes.add_service(health_service), &adapters.metrics, &settings, &stop).await?;
        let metrics_addr = match settings.telemetry.metrics_addr {
            Some(addr) => {
                let listener = metrics_server::bind(addr).await?;
                let bound = listener.local_addr()?;
                background.push(tokio::spawn(metrics_server::serve(listener, adapters.metrics, stop.clone())));
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

/// The user and admin services and reflection; health is added by the caller.
fn grpc_services(use_cases: UseCases, a: &Adapters, settings: &Settings) -> anyhow::Result<Routes> {
    let UseCases { password_rules, registration, sessions, passwords, email_change, two_factor, admin, guard: _ } =
        use_cases;
    let limiter =
        |scope, per_minute| RateLimiter::new(scope, per_minute, a.rate_limits.clone(), a.local_rate_limits.clone());
    let service = UserGrpcService {
        password_rules,
        sign_up: registration.sign_up,
        verify_email: registration.verify_email,
        resend_verification_email: registration.resend_verification_email,
        login: sessions.login,
        validate_token: sessions.validate_token,
        get_current_user: sessions.get_current_user,
        refresh_session: sessions.refresh_session,
        list_sessions: sessions.list_sessions,
        revoke_session: sessions.revoke_session,
        logout: sessions.logout,
        logout_all: sessions.logout_all,
        change_password: passwords.change_password,
        request_password_reset: passwords.request_password_reset,
        reset_password: passwords.reset_password,
        request_email_change: email_change.request,
        confirm_email_change: email_change.confirm,
        complete_mfa_login: two_factor.complete_mfa_login,
        begin_totp_enrollment: two_factor.begin_totp_enrollment,
        confirm_totp_enrollment: two_factor.confirm_totp_enrollment,
        disable_totp: two_factor.disable_totp,
        regenerate_recovery_codes: two_factor.regenerate_recovery_codes,
        tokens: a.tokens.clone(),
        limits: CallLimits {
            per_address: limiter("address", settings.limits.per_address),
            per_address_refresh: limiter("refresh", settings.limits.refresh_per_address),
            per_email: limiter("email", settings.limits.per_email),
            trusted_header: settings.server.trusted_client_ip_header.clone(),
        },
        enumeration_floor: ENUMERATION_FLOOR,
        metrics: a.metrics.clone(),
    };
    let server = &settings.server;
    let admin = AdminGrpcService::new(admin, &server.admin_api_key_hashes, server.trusted_client_ip_header.clone());
    let reflection_v1 = reflection_builder().build_v1().context("building the reflection service")?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().context("building the reflection service")?;
    let size = settings.limits.max_message_size;
    Ok(Routes::new(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(UserServiceServer::new(service).max_decoding_message_size(size).max_encoding_message_size(size))
        .add_service(AdminServiceServer::new(admin).max_decoding_message_size(size).max_encoding_message_size(size)))
}

/// The outbox relays (emails, user events), the pruning and the hashing-queue gauge.
fn spawn_background_tasks(a: &Adapters, settings: &Settings, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    // One commit wakes both relays: each has its own signal, so that neither
    // takes the other's wake-up.
    let (email_wake, event_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let fan_out = fan_out_wake_ups(a.outbox_written.clone(), [email_wake.clone(), event_wake.clone()], stop.clone());
    let relay = OutboxRelay {
        metrics: a.metrics.clone(),
        store: a.outbox.clone(),
        publisher: a.publisher.clone(),
        wake: email_wake,
        clock: a.clock.clone(),
        settings: settings.outbox,
    };
    let event_relay = OutboxRelay {
        metrics: a.metrics.clone(),
        store: a.event_outbox.clone(),
        publisher: a.event_publisher.clone(),
        wake: event_wake,
        clock: a.clock.clone(),
        settings: settings.outbox,
    };
    let pruning = PruneStaleRecords {
        pruner: Arc::new(SeaOrmPruner::new(a.db.clone(), a.outbox_written.clone())),
        clock: a.clock.clone(),
        pending_signup_retention: settings.pruning.pending_signup_retention,
        batch_size: PRUNE_BATCH_SIZE,
        max_batches: PRUNE_MAX_BATCHES,
    };
    vec![
        tokio::spawn(fan_out),
        tokio::spawn(relay.run(stop.clone())),
        tokio::spawn(event_relay.run(stop.clone())),
        tokio::spawn(prune_periodically(pruning, settings.pruning.interval, stop.clone())),
    ]
}

/// Keeps the shared budgets' table as small as the budgets in use.
async fn sweep_rate_limits(shared: PostgresRateLimits, stop: CancellationToken) {
    let mut every = tokio::time::interval(RATE_LIMIT_SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                if let Err(error) = shared.sweep(RATE_LIMIT_SWEEP_BATCH).await {
                    tracing::warn!(error = %error, "could not sweep the shared rate limits");
                }
            }
        }
    }
}

/// Passes each wake-up on to every relay (a `Notify` permit per relay, so a
/// relay busy with a round still sees it afterwards).
async fn fan_out_wake_ups(written: Arc<Notify>, relays: [Arc<Notify>; 2], stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = written.notified() => relays.iter().for_each(|relay| relay.notify_one()),
        }
    }
}

/// Health follows the database, re-checked every `READINESS_INTERVAL`.
async fn watch_readiness(reporter: HealthReporter, db: DatabaseConnection, stop: &CancellationToken) -> JoinHandle<()> {
    // Known but not serving until the first readiness check passes, so that a
    // probe arriving first gets NOT_SERVING rather than NOT_FOUND.
    for service in ["", health::USER_SERVICE_NAME] {
        reporter.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
    }
    let readiness: ReadinessCheck = Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.ping().await.is_ok() })
    });
    tokio::spawn(health::watch_readiness(reporter, readiness, READINESS_INTERVAL, stop.clone()))
}

/// Binds `IDENTITY_GRPC_ADDR` and returns the server future, over TLS when configured.
async fn serve_grpc(
    routes: Routes,
    metrics: &Arc<Metrics>,
    settings: &Settings,
    stop: &CancellationToken,
) -> anyhow::Result<(SocketAddr, ServeFuture)> {
    let addr = settings.server.grpc_addr;
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (IDENTITY_GRPC_ADDR)"))?;
    let local_addr = listener.local_addr()?;
    let router = Server::builder()
        .layer(RequestContextLayer::new(
            metrics,
            &crate::grpc::served_methods().context("listing the served gRPC methods")?,
        ))
        .add_routes(routes);
    let shutdown = stop.clone().cancelled_owned();
    let serve: ServeFuture = match &settings.tls {
        Some(tls_settings) => {
            let acceptor = tls::acceptor(tls_settings, stop.clone())?;
            tracing::info!(mutual = tls_settings.client_ca_file.is_some(), "gRPC over TLS");
            let incoming = tls::incoming(listener, acceptor, stop.clone());
            Box::pin(router.serve_with_incoming_shutdown(incoming, shutdown))
        }
        None => Box::pin(
            router.serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown),
        ),
    };
    Ok((local_addr, serve))
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    crate::grpc::REFLECTED_DESCRIPTOR_SETS
        .iter()
        .fold(tonic_reflection::server::Builder::configure(), |builder, set| {
            builder.register_encoded_file_descriptor_set(set)
        })
}
