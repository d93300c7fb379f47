//! Faults the service must survive: dependencies cut, black-holed or gone, and
//! its own processes killed for real.

use std::{collections::BTreeSet, process::Stdio, time::Duration};

use identity::grpc::proto::{LoginRequest, user_service_client::UserServiceClient};
use tokio::process::{Child, Command};
use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use testkit::{free_port, on_both_databases};

use crate::{
    helpers::{Backend, STRONG_PASSWORD, sign_up_request, spawn_app_with, verified_user},
    pipeline_helpers::{
        Names, amqp_url, broker_available, recipient_of, sendgrid_accepting, start_mailer, start_server,
    },
    tcp_proxy::TcpProxy,
};

const BROKER: &str = "127.0.0.1:5672";

async fn wait_for_distinct_recipients(sendgrid: &MockServer, count: usize, within: Duration) -> Vec<wiremock::Request> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let requests = sendgrid.received_requests().await.unwrap_or_default();
        let distinct: BTreeSet<String> = requests.iter().map(recipient_of).collect();
        if distinct.len() >= count {
            return requests;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {count} recipients reached SendGrid", distinct.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_databases!(three_hundred_signups_while_the_broker_is_away_all_arrive_once);

async fn three_hundred_signups_while_the_broker_is_away_all_arrive_once(backend: Backend) {
    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    let port = free_port().unwrap();
    let Some(app) = start_server(backend, &names, &format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).await else {
        return;
    };
    let sendgrid = sendgrid_accepting().await;
    let (stop, _task, _) = start_mailer(&app, &names, &sendgrid).await;
    let calls = (0..300).map(|i| {
        let mut client = app.client.clone();
        tokio::spawn(async move { client.sign_up(sign_up_request(&format!("away{i}@example.com"))).await })
    });
    for call in calls {
        call.await.unwrap().expect("every signup answers OK while the broker is away");
    }
    assert!(sendgrid.received_requests().await.unwrap().is_empty());
    let _proxy = TcpProxy::start(port, BROKER.parse().unwrap()).await;
    wait_for_distinct_recipients(&sendgrid, 300, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sendgrid.received_requests().await.unwrap().len(), 300, "none twice");
    stop.cancel();
}

/// PostgreSQL reached through a proxy that first cuts every connection, then
/// swallows new ones without answering: calls fail fast with UNAVAILABLE, and
/// everything recovers when the database is back, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_database_gives_unavailable_within_the_acquire_timeout_and_recovers() {
    let port = free_port().unwrap();
    let proxy = TcpProxy::start(port, "127.0.0.1:5432".parse().unwrap()).await;
    let Some(mut app) = spawn_app_with(Backend::Postgres, |s| {
        s.database.url = secrecy::ExposeSecret::expose_secret(&s.database.url)
            .replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"))
            .into();
        s.database.acquire_timeout = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    verified_user(&mut app, "ada@example.com").await;
    drop(proxy);
    let hole = TcpProxy::blackhole(port).await;
    let login = || LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let status = app.client.login(login()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "a black-holed database must not hang calls");
    }
    drop(hole);
    let _proxy = TcpProxy::start(port, "127.0.0.1:5432".parse().unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.client.login(login()).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn server_binary(database_url: &str, port: u16, amqp: &str, names: &Names) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_identity-server"));
    command
        .env("IDENTITY_GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("IDENTITY_DATABASE_URL", database_url)
        .env("IDENTITY_AMQP_URL", amqp)
        .env("IDENTITY_AMQP_EXCHANGE", &names.topology.exchange)
        .env("IDENTITY_OUTBOX_POLL_INTERVAL", "200ms")
        .env("IDENTITY_VERIFICATION_URL", crate::helpers::VERIFICATION_URL)
        .env("IDENTITY_ARGON2_M_COST", "256")
        .env("IDENTITY_ARGON2_T_COST", "1")
        .env("IDENTITY_METRICS_ADDR", "off")
        .env("IDENTITY_RATE_LIMIT_PER_ADDRESS", "0")
        .env("IDENTITY_RATE_LIMIT_PER_EMAIL", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn client_for(port: u16) -> UserServiceClient<tonic::transport::Channel> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(client) = UserServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            return client;
        }
        assert!(tokio::time::Instant::now() < deadline, "the server never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(child: &Child, name: &str) {
    std::process::Command::new("kill").args([name, &child.id().unwrap().to_string()]).status().unwrap();
}

/// The server is killed (SIGKILL) after committing a sign-up and before it could
/// publish the event (the broker was unreachable); the restarted server publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_before_a_crash_is_published_after_the_restart() {
    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    // A test app only to own a fresh database (and give the mailer its settings).
    let Some(owner) = spawn_app_with(Backend::Postgres, |_| {}).await else { return };
    let database_url = owner.database.url();
    let sendgrid = sendgrid_accepting().await;
    let (stop, _task, _) = start_mailer(&owner, &names, &sendgrid).await;

    let port = free_port().unwrap();
    let dead_broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port().unwrap());
    let mut first = server_binary(&database_url, port, &dead_broker, &names).spawn().unwrap();
    client_for(port).await.sign_up(sign_up_request("crash@example.com")).await.unwrap();
    signal(&first, "-KILL");
    let _ = first.wait().await;

    let _second = server_binary(&database_url, port, &amqp_url(), &names).spawn().unwrap();
    let requests = wait_for_distinct_recipients(&sendgrid, 1, Duration::from_secs(30)).await;
    assert_eq!(recipient_of(&requests[0]), "crash@example.com");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sendgrid.received_requests().await.unwrap().len(), 1, "exactly once");
    stop.cancel();
}

fn mailer_binary(database_url: &str, names: &Names, sendgrid: &MockServer) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_identity-mailer"));
    command
        .env("IDENTITY_AMQP_URL", amqp_url())
        .env("IDENTITY_AMQP_EXCHANGE", &names.topology.exchange)
        .env("IDENTITY_MAILER_QUEUE", &names.topology.queue)
        .env("IDENTITY_DATABASE_URL", database_url)
        .env("IDENTITY_AUTO_MIGRATE", "false")
        .env("IDENTITY_EMAIL_PROVIDER", "sendgrid")
        .env("SENDGRID_API_KEY", "SG.kill-test")
        .env("SENDGRID_BASE_URL", sendgrid.uri())
        .env("IDENTITY_VERIFICATION_URL", crate::helpers::VERIFICATION_URL)
        .env("IDENTITY_MAILER_HEALTH_ADDR", "127.0.0.1:0")
        .env("IDENTITY_METRICS_ADDR", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The mailer is SIGKILLed in the middle of a 200-email burst and restarted: all
/// 200 arrive. Duplicates are possible only for the messages in flight at the kill
/// (accepted by SendGrid, not yet recorded): at most the prefetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailer_killed_mid_burst_and_restarted_loses_no_email() {
    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    let Some(app) = start_server(Backend::Postgres, &names, &amqp_url()).await else { return };
    let sendgrid = MockServer::start().await;
    // A slow provider keeps the burst going long enough to kill the mailer in it.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_millis(400)))
        .mount(&sendgrid)
        .await;
    let database_url = app.database.url();
    let mut mailer = mailer_binary(&database_url, &names, &sendgrid).spawn().unwrap();

    let calls = (0..200).map(|i| {
        let mut client = app.client.clone();
        tokio::spawn(async move { client.sign_up(sign_up_request(&format!("burst{i}@example.com"))).await })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sendgrid.received_requests().await.unwrap().len() < 40 {
        assert!(tokio::time::Instant::now() < deadline, "the mailer never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&mailer, "-KILL");
    let _ = mailer.wait().await;
    let delivered_before_restart = sendgrid.received_requests().await.unwrap().len();
    assert!(delivered_before_restart < 200, "the kill must land mid-burst");

    let _restarted = mailer_binary(&database_url, &names, &sendgrid).spawn().unwrap();
    let requests = wait_for_distinct_recipients(&sendgrid, 200, Duration::from_secs(120)).await;
    assert!(requests.len() <= 200 + 16, "{} requests: more duplicates than messages in flight", requests.len());
}

/// SIGTERM while calls are in flight: they complete, later ones are refused, the
/// process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_finishes_the_calls_in_flight_and_exits_cleanly() {
    let names = Names::fresh();
    let database = std::env::temp_dir().join(format!("identity-sigterm-{}.db", uuid::Uuid::new_v4().simple()));
    let port = free_port().unwrap();
    let mut command = server_binary(&format!("sqlite://{}?mode=rwc", database.display()), port, "", &names);
    // Costlier hashing makes each sign-up take a while, so that the signal lands mid-burst.
    command.env_remove("IDENTITY_AMQP_URL").env("IDENTITY_ARGON2_M_COST", "8192").env("IDENTITY_ARGON2_T_COST", "2");
    let mut server = command.spawn().unwrap();
    let client = client_for(port).await;
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { client.sign_up(sign_up_request(&format!("term{i}@example.com"))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&server, "-TERM");
    let mut completed = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => completed += 1,
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "refused, never failed: {status:?}"),
        }
    }
    assert!(completed > 0, "calls in flight at the signal complete");
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit 0 after draining: {status:?}");
    let refused = UserServiceClient::connect(format!("http://127.0.0.1:{port}")).await;
    assert!(refused.is_err(), "nothing listens after shutdown");
    let _ = std::fs::remove_file(database);
}
