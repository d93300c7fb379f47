//! What the email path leaves behind and what it lets through: no usable link at
//! rest once an event is published, no caller-chosen text to unverified
//! addresses, a cap on "someone tried to register" emails, and a mailer that
//! refuses messages it did not expect.

use std::time::Duration;

use identity::{
    grpc::proto::{RequestPasswordResetRequest, ResendVerificationEmailRequest, SignUpRequest},
    infrastructure::rabbitmq::{DEAD_LETTER_REASON_HEADER, string_header},
};
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicGetOptions, BasicPublishOptions},
};
use sea_orm::{ConnectionTrait, Database, Statement};

use testkit::on_both_databases;

use crate::{
    helpers::{Backend, TestApp, sign_up_request, spawn_app, token_in, verified_user, wait_for_email},
    pipeline_helpers::{Pipeline, amqp_url, recipient_of, sendgrid_accepting, token_in_request},
};

on_both_databases!(
    builder = spawn_app;
    published_outbox_rows_keep_no_verification_or_reset_link,
    rows_published_before_redaction_lose_their_links_at_the_next_start,
    the_verification_email_greets_by_the_address_not_by_the_name_the_caller_chose,
);

/// Every email row's payload in the outbox (user events carry no link), once
/// the relay has settled them all.
pub async fn settled_outbox_payloads(database_url: &str) -> Vec<String> {
    let db = Database::connect(database_url).await.unwrap();
    let backend = db.get_database_backend();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT payload, CASE WHEN published_at IS NULL THEN 0 ELSE 1 END AS settled FROM outbox \
                 WHERE stream_position IS NULL",
            ))
            .await
            .unwrap();
        let settled = rows.iter().all(|row| row.try_get::<i32>("", "settled").unwrap() == 1);
        if settled {
            return rows.iter().map(|row| row.try_get::<String>("", "payload").unwrap()).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "the relay never settled every outbox row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn published_outbox_rows_keep_no_verification_or_reset_link(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    let verification_token = token_in(&app.emails.sent()[0]);
    let request = RequestPasswordResetRequest { email: "ada@example.com".into() };
    app.client.request_password_reset(request).await.unwrap();
    let reset_token = token_in(&wait_for_email(&app, "ada@example.com", "Reset your password").await);

    let payloads = settled_outbox_payloads(&app.database.url()).await;
    assert_eq!(payloads.len(), 2, "the verification and the reset event");
    for payload in &payloads {
        assert!(!payload.contains(&verification_token), "a verification token at rest: {payload}");
        assert!(!payload.contains(&reset_token), "a reset token at rest: {payload}");
        assert!(!payload.contains("token="), "a link at rest: {payload}");
    }
}

async fn the_verification_email_greets_by_the_address_not_by_the_name_the_caller_chose(mut app: TestApp) {
    const PITCH: &str = "Cheap pills at evil.example";
    let request = SignUpRequest {
        display_name: PITCH.into(),
        first_name: "Urgent".into(),
        ..sign_up_request("victim@example.com")
    };
    app.client.sign_up(request).await.unwrap();
    app.clock.advance(Duration::from_secs(61));
    app.client
        .resend_verification_email(ResendVerificationEmailRequest { email: "victim@example.com".into() })
        .await
        .unwrap();
    let emails = app.emails.wait_for(2).await;
    for email in &emails {
        for body in [&email.text_body, &email.html_body] {
            assert!(!body.contains("evil.example"), "caller-chosen text reached an unverified address: {body}");
            assert!(!body.contains("Urgent"), "caller-chosen text reached an unverified address: {body}");
            assert!(body.contains("Hello victim,"), "{body}");
        }
    }
}

/// The RabbitMQ publisher settles rows through the same statement.
async fn the_broker_path_leaves_no_link_at_rest(backend: Backend) {
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid_accepting().await).await else {
        return;
    };
    pipeline.app.client.sign_up(sign_up_request("ada@example.com")).await.unwrap();
    let token = token_in_request(&pipeline.wait_for_requests(1).await[0]);
    let payloads = settled_outbox_payloads(&pipeline.app.database.url()).await;
    assert_eq!(payloads.len(), 1);
    assert!(!payloads[0].contains(&token), "a verification token at rest: {}", payloads[0]);
    pipeline.stop_mailer().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_path_leaves_no_link_at_rest_on_sqlite() {
    the_broker_path_leaves_no_link_at_rest(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_path_leaves_no_link_at_rest_on_postgres() {
    the_broker_path_leaves_no_link_at_rest(Backend::Postgres).await;
}

fn forged_verification(email: &str, link: &str) -> Vec<u8> {
    serde_json::json!({
        "schema_version": 1,
        "event_id": uuid::Uuid::now_v7(),
        "user_id": uuid::Uuid::now_v7(),
        "email": email,
        "display_name": "friend",
        "verification_link": link,
        "expires_at": "2030-01-01T00:00:00Z",
        "occurred_at": "2026-01-01T00:00:00Z",
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_message_with_a_foreign_link_is_dead_lettered_not_sent() {
    let Some(pipeline) = Pipeline::start(Backend::Sqlite, sendgrid_accepting().await).await else {
        return;
    };
    let token = "A".repeat(43);
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let publish = |body: Vec<u8>| {
        let channel = channel.clone();
        let exchange = pipeline.names.topology.exchange.clone();
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    "user.verification_email_requested".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_type("user.verification_email_requested".into()),
                )
                .await
                .unwrap();
        }
    };
    // A link to someone else's site, and an address SignUp would never store.
    publish(forged_verification("victim@example.com", &format!("https://evil.example/verify?token={token}"))).await;
    publish(forged_verification(" Victim@Example.com", &format!("https://app.example/verify?token={token}"))).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "dead-lettered so far: {reasons:?}");
        let got = channel
            .basic_get(pipeline.names.topology.dead_letter_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        match got {
            Some(message) => {
                reasons.push(string_header(&message.delivery.properties, DEAD_LETTER_REASON_HEADER).unwrap())
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        reasons.iter().any(|r| r.contains("refused: the link was not made from IDENTITY_VERIFICATION_URL")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not canonical")), "{reasons:?}");
    assert!(reasons.iter().all(|r| !r.contains(&token)), "reasons never carry the token: {reasons:?}");

    // A message the server could have written still goes out, and nothing else did.
    publish(forged_verification("friend@example.com", &format!("https://app.example/verify?token={token}"))).await;
    let requests = pipeline.wait_for_requests(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pipeline.sendgrid_requests().await.len(), 1);
    assert_eq!(recipient_of(&requests[0]), "friend@example.com");
    let _ = connection.close(200, "done".into()).await;
}

const ATTEMPT_SUBJECT: &str = "Someone tried to sign up with your email address";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_attempt_notices_respect_the_cooldown_and_the_hourly_cap_on_sqlite() {
    capped_registration_notices(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_attempt_notices_respect_the_cooldown_and_the_hourly_cap_on_postgres() {
    capped_registration_notices(Backend::Postgres).await;
}

/// Signs up with the owner's address; the answer must not tell whether the owner was emailed.
async fn attempt(app: &mut TestApp) {
    let user = app.client.sign_up(sign_up_request("OWNER@example.com")).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.email, "owner@example.com");
    assert_eq!(user.status(), identity::grpc::proto::UserStatus::PendingVerification);
}

async fn notices(app: &TestApp) -> usize {
    settled_outbox_payloads(&app.database.url()).await;
    crate::helpers::emails_to(app, "owner@example.com", ATTEMPT_SUBJECT).len()
}

async fn capped_registration_notices(backend: Backend) {
    let Some(mut app) = crate::helpers::spawn_app_with(backend, |s| s.server.signup_enumeration_safe = true).await
    else {
        return;
    };
    verified_user(&mut app, "owner@example.com").await;
    attempt(&mut app).await;
    attempt(&mut app).await;
    assert_eq!(notices(&app).await, 1, "the second attempt fell within the cooldown");
    for _ in 0..6 {
        app.clock.advance(Duration::from_secs(61));
        attempt(&mut app).await;
    }
    assert_eq!(notices(&app).await, 5, "at most five an hour");
    app.clock.advance(Duration::from_secs(3600));
    attempt(&mut app).await;
    assert_eq!(notices(&app).await, 6, "the cap counts the last hour only");
}

async fn rows_published_before_redaction_lose_their_links_at_the_next_start(app: TestApp) {
    // A row as an earlier version left it: published, link and all.
    let url = app.database.url();
    let db = Database::connect(url.as_str()).await.unwrap();
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "INSERT INTO outbox (id, event_type, payload, created_at, published_at, attempts) VALUES ($1, $2, $3, $4, $5, 0)"
        }
        _ => {
            "INSERT INTO outbox (id, event_type, payload, created_at, published_at, attempts) VALUES (?, ?, ?, ?, ?, 0)"
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let old = r#"{"schema_version":1,"email":"ada@example.com","verification_link":"https://app.example/verify?token=old-live-token"}"#;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [uuid::Uuid::now_v7().into(), "user.verification_email_requested".into(), old.into(), now.into(), now.into()],
    ))
    .await
    .unwrap();

    // The next server to start on this database redacts it.
    let restarted = identity::startup::Application::build(
        crate::helpers::test_settings(&url),
        identity::startup::Overrides::default(),
    )
    .await
    .unwrap();
    let stop = restarted.shutdown_token();
    tokio::spawn(restarted.run_until_stopped());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while settled_outbox_payloads(&url).await.iter().any(|payload| payload.contains("old-live-token")) {
        assert!(tokio::time::Instant::now() < deadline, "the old row kept its link");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}
