use std::time::Duration;

use identity::grpc::proto::{LoginRequest, SignUpRequest};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, from_address, sign_up_request, spawn_app, spawn_app_with, verified_user,
    wait_for_email,
};

on_both_databases!(
    builder = spawn_app;
    five_failed_logins_throttle_the_account_without_revealing_the_password,
    unknown_addresses_are_throttled_exactly_like_registered_ones,
);

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest { email: email.into(), password: password.into(), client: None }
}

fn retry_delay(status: &tonic::Status) -> Duration {
    status.get_error_details().retry_info().expect("RetryInfo").retry_delay.expect("a delay")
}

async fn five_failed_logins_throttle_the_account_without_revealing_the_password(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    for _ in 0..5 {
        let status = app.client.login(login("ada@example.com", "wrong-password-1")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Throttled: even the right password gets the same RESOURCE_EXHAUSTED.
    let right = app.client.login(login("ada@example.com", STRONG_PASSWORD)).await.unwrap_err();
    let wrong = app.client.login(login("ada@example.com", "wrong-password-1")).await.unwrap_err();
    assert_eq!(right.code(), Code::ResourceExhausted);
    assert_eq!((right.code(), right.message()), (wrong.code(), wrong.message()));
    assert!(retry_delay(&right) >= Duration::from_secs(1));

    // Once the delay has passed, the right password works and clears the count.
    app.clock.advance(Duration::from_secs(2));
    app.client.login(login("ada@example.com", STRONG_PASSWORD)).await.unwrap();
    for _ in 0..5 {
        app.client.login(login("ada@example.com", "wrong-password-1")).await.unwrap_err();
    }
    let status = app.client.login(login("ada@example.com", STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "five more failures throttle again");
}

async fn unknown_addresses_are_throttled_exactly_like_registered_ones(mut app: TestApp) {
    for _ in 0..5 {
        let status = app.client.login(login("ghost@example.com", STRONG_PASSWORD)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = app.client.login(login("ghost@example.com", STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_one_address_are_rate_limited_with_retry_info() {
    let Some(mut app) = spawn_app_with(Backend::Sqlite, |s| s.limits.per_address = 3).await else { return };
    for i in 0..3 {
        app.client.sign_up(sign_up_request(&format!("user{i}@example.com"))).await.unwrap();
    }
    let status = app.client.sign_up(sign_up_request("user4@example.com")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(retry_delay(&status) >= Duration::from_secs(1));
    // Each operation has a budget of its own: spent sign-ups do not block logins.
    let status = app.client.login(login("user0@example.com", STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // RPCs that take no secret are not limited.
    app.client.get_public_keys(identity::grpc::proto::GetPublicKeysRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_trusted_header_names_the_caller() {
    let Some(mut app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.per_address = 2;
        s.server.trusted_client_ip_header = Some("x-forwarded-for".into());
    })
    .await
    else {
        return;
    };
    let from =
        |ip: &str, email: &str| from_address(&format!("198.51.100.7, {ip}"), Request::new(sign_up_request(email)));
    app.client.sign_up(from("203.0.113.1", "a1@example.com")).await.unwrap();
    app.client.sign_up(from("203.0.113.1", "a2@example.com")).await.unwrap();
    let limited = app.client.sign_up(from("203.0.113.1", "a3@example.com")).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    // Another caller behind the same proxy has its own bucket.
    app.client.sign_up(from("203.0.113.2", "b1@example.com")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_is_rate_limited_across_callers() {
    let Some(mut app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.per_email = 2;
        s.server.trusted_client_ip_header = Some("x-forwarded-for".into());
    })
    .await
    else {
        return;
    };
    let resend = |email: &str, from: &str| {
        from_address(from, Request::new(identity::grpc::proto::ResendVerificationEmailRequest { email: email.into() }))
    };
    app.client.resend_verification_email(resend("target@example.com", "198.51.100.1")).await.unwrap();
    app.client.resend_verification_email(resend("target@example.com", "198.51.100.2")).await.unwrap();
    let status = app.client.resend_verification_email(resend("TARGET@example.com", "198.51.100.3")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_naming_one_email_are_limited_per_caller_so_a_stranger_cannot_spend_the_owners() {
    let Some(mut app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.per_email = 2;
        s.server.trusted_client_ip_header = Some("x-forwarded-for".into());
    })
    .await
    else {
        return;
    };
    verified_user(&mut app, "target@example.com").await;
    let login_from =
        |password: &str, from: &str| from_address(from, Request::new(login("target@example.com", password)));
    for _ in 0..2 {
        app.client.login(login_from("whatever-it-is", "198.51.100.9")).await.unwrap_err();
    }
    let stranger = app.client.login(login_from("whatever-it-is", "198.51.100.9")).await.unwrap_err();
    assert_eq!(stranger.code(), Code::ResourceExhausted);
    app.client.login(login_from(STRONG_PASSWORD, "203.0.113.5")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enumeration_safe_sign_up_answers_alike_and_tells_the_owner() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(mut app) = spawn_app_with(backend, |s| s.server.signup_enumeration_safe = true).await else {
            continue;
        };
        verified_user(&mut app, "owner@example.com").await;
        let request = SignUpRequest { display_name: "Mallory".into(), ..sign_up_request("OWNER@example.com") };
        let user = app
            .client
            .sign_up(request)
            .await
            .expect("a taken address answers like a fresh one")
            .into_inner()
            .user
            .unwrap();
        assert_eq!(user.email, "owner@example.com");
        assert_eq!(user.status(), identity::grpc::proto::UserStatus::PendingVerification);
        let notice =
            wait_for_email(&app, "owner@example.com", "Someone tried to sign up with your email address").await;
        assert!(!notice.text_body.contains("Mallory"), "the attempt's data is not echoed to the owner");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_upgrades_a_hash_made_with_weaker_parameters() {
    use sea_orm::{ConnectionTrait, Database, Statement};

    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(mut weak) = spawn_app_with(backend, |_| {}).await else { continue };
        verified_user(&mut weak, "ada@example.com").await;
        let url = weak.database.url();
        let stored = || async {
            let db = Database::connect(url.as_str()).await.unwrap();
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT password_hash FROM users"))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<String>("", "password_hash").unwrap()
        };
        assert!(stored().await.contains("m=256,"));

        // A second server on the same database, configured with more memory.
        let mut settings = crate::helpers::test_settings(&url);
        settings.passwords.argon2.m_cost = 512;
        let app =
            identity::startup::Application::build(settings, identity::startup::Overrides::default()).await.unwrap();
        let port = app.port();
        let stop = app.shutdown_token();
        tokio::spawn(app.run_until_stopped());
        let mut client =
            identity::grpc::proto::user_service_client::UserServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .unwrap();
        client.login(login("ada@example.com", STRONG_PASSWORD)).await.unwrap();
        assert!(stored().await.contains("m=512,"), "the hash was upgraded on login");
        client.login(login("ada@example.com", STRONG_PASSWORD)).await.expect("the upgraded hash verifies");
        stop.cancel();
    }
}
