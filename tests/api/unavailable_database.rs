use std::time::Duration;

use identity::grpc::proto::LoginRequest;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    health_and_reflection::health_status,
    helpers::{Backend, STRONG_PASSWORD, TestApp, spawn_app_with, verified_user},
};

async fn wait_for_health(app: &TestApp, wanted: ServingStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while health_status(app, "identity.v1.UserService").await != wanted {
        assert!(tokio::time::Instant::now() < deadline, "health never became {wanted:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL refuses connections to the test database (and drops the open
/// ones): calls answer UNAVAILABLE within the acquire timeout, health goes
/// NOT_SERVING, and both recover without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_not_internal_and_recovers() {
    let Some(mut app) =
        spawn_app_with(Backend::Postgres, |s| s.database.acquire_timeout = Duration::from_secs(1)).await
    else {
        return;
    };
    verified_user(&mut app, "ada@example.com").await;
    wait_for_health(&app, ServingStatus::Serving).await;
    let crate::helpers::TestDatabase::Postgres { name, .. } = &app.database else { unreachable!() };
    let name = name.clone();

    app.database.admin_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false")).await;
    app.database
        .admin_execute(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        .await;

    let login = || LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
    let started = tokio::time::Instant::now();
    let status = app.client.login(login()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the call must not hang");
    wait_for_health(&app, ServingStatus::NotServing).await;

    app.database.admin_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await;
    wait_for_health(&app, ServingStatus::Serving).await;
    app.client.login(login()).await.unwrap();
}
