//! The user events other services consume: published once per change, as
//! CloudEvents in AMQP binary mode with protobuf data, in commit order per
//! user, whatever the broker and the other relays do meanwhile.

use std::{collections::HashSet, time::Duration};

use futures_util::StreamExt;
use identity::{
    grpc::proto::{
        ChangePasswordRequest, ConfirmEmailChangeRequest, DeleteUserRequest, DisableUserRequest, EnableUserRequest,
        ListSessionsRequest, LoginRequest, LogoutAllRequest, LogoutRequest, RefreshSessionRequest,
        RequestEmailChangeRequest, RequestPasswordResetRequest, ResetPasswordRequest, RevokeSessionRequest,
        RevokeUserSessionsRequest, SetUserEmailRequest, SignUpRequest, VerifyEmailRequest,
        admin_service_client::AdminServiceClient,
    },
    infrastructure::{
        outbox::user_events::proto::{self, session_revoked::Reason},
        rabbitmq::{cloud_events, declare_exchange},
    },
};
use lapin::{
    Connection, ConnectionProperties, Consumer,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use prost::Message;
use sea_orm::{ConnectionTrait, Database, Statement};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use testkit::{free_port, on_both_databases};

use crate::{
    admin::keyed,
    helpers::{Backend, STRONG_PASSWORD, TestApp, sign_up_request, spawn_app_with, with_bearer},
    pipeline_helpers::{
        Names, Pipeline, amqp_url, broker_available, recipient_of, sendgrid_accepting, token_in_request,
    },
    tcp_proxy::TcpProxy,
};

on_both_databases!(
    every_change_publishes_one_cloud_event_in_commit_order,
    user_events_are_published_while_no_mailer_listens_and_with_nobody_bound,
    a_users_events_wait_out_a_broker_outage_and_arrive_once_in_order,
    concurrent_changes_of_one_user_are_published_in_the_order_they_committed,
    address_and_session_changes_publish_their_events,
);

const ADMIN_KEY: &str = "test-admin-key-0123456789";
const NEW_PASSWORD: &str = "plum orbit canyon forty seven";

/// A queue bound to every user event of the test's exchange (exclusive: it
/// goes when the connection does).
struct EventQueue {
    _connection: Connection,
    consumer: Consumer,
}

impl EventQueue {
    async fn bind(exchange: &str) -> Self {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        declare_exchange(&channel, exchange).await.unwrap();
        let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
        let queue = channel.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "identity.v1.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(queue.name().clone(), "events".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .unwrap();
        Self { _connection: connection, consumer }
    }

    /// Waits for `count` events, then a little longer to catch any extra one.
    async fn take(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while events.len() < count {
            let next = tokio::time::timeout_at(deadline, self.consumer.next()).await;
            let delivery = next.unwrap_or_else(|_| panic!("{} of {count} events arrived", events.len()));
            events.push(Event::from(delivery.unwrap().unwrap()).await);
        }
        if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_secs(1), self.consumer.next()).await {
            panic!("an event more than the {count} expected: {:?}", Event::from(extra.unwrap()).await.event_type);
        }
        events
    }
}

/// One delivered event, with what a consumer reads of it.
struct Event {
    routing_key: String,
    content_type: String,
    id: String,
    source: String,
    event_type: String,
    time: String,
    subject: String,
    spec_version: String,
    body: Vec<u8>,
}

fn header(delivery: &Delivery, name: &str) -> String {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    match headers.inner().get(name) {
        Some(AMQPValue::LongString(value)) => String::from_utf8(value.as_bytes().to_vec()).unwrap(),
        other => panic!("header {name}: {other:?}"),
    }
}

impl Event {
    async fn from(delivery: Delivery) -> Self {
        let event = Self {
            routing_key: delivery.routing_key.to_string(),
            content_type: delivery.properties.content_type().as_ref().map(ToString::to_string).unwrap_or_default(),
            id: header(&delivery, "cloudEvents:id"),
            source: header(&delivery, "cloudEvents:source"),
            event_type: header(&delivery, "cloudEvents:type"),
            time: header(&delivery, "cloudEvents:time"),
            subject: header(&delivery, "cloudEvents:subject"),
            spec_version: header(&delivery, "cloudEvents:specversion"),
            body: delivery.data.clone(),
        };
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        event
    }

    fn short_type(&self) -> &str {
        self.event_type.strip_prefix("identity.v1.").unwrap_or(&self.event_type)
    }

    fn revoked(&self) -> proto::SessionRevoked {
        assert_eq!(self.short_type(), "session.revoked");
        proto::SessionRevoked::decode(self.body.as_slice()).unwrap()
    }
}

/// The server publishing both emails and user events to the test's exchange
/// through `amqp_url`, with the admin API on.
async fn events_server(backend: Backend, names: &Names, amqp_url: &str) -> Option<TestApp> {
    let url = amqp_url.to_owned();
    let exchange = names.topology.exchange.clone();
    spawn_app_with(backend, move |settings| {
        settings.amqp = Some(crate::pipeline_helpers::amqp_settings(&url, &exchange));
        settings.outbox.poll_interval = Duration::from_millis(200);
        settings.outbox.max_backoff = Duration::from_millis(500);
        settings.server.admin_api_key_hashes = vec![hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()))];
    })
    .await
}

async fn admin(app: &TestApp) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(app.channel().await)
}

async fn every_change_publishes_one_cloud_event_in_commit_order(backend: Backend) {
    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    let mut events = EventQueue::bind(&names.topology.exchange).await;
    let Some(app) = events_server(backend, &names, &amqp_url()).await else { return };
    let sendgrid = sendgrid_accepting().await;
    let mut pipeline = Pipeline::with_app(app, sendgrid, names).await;
    let client = &mut pipeline.app.client;

    let request = SignUpRequest { display_name: "Ada".into(), ..sign_up_request("Ada@Example.com") };
    let user_id = client.sign_up(request).await.unwrap().into_inner().user.unwrap().id;
    let token = token_in_request(&mailer_done(&pipeline, 1).await[0]);
    let client = &mut pipeline.app.client;
    client.verify_email(VerifyEmailRequest { token }).await.unwrap();
    let login = LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
    let access = client.login(login).await.unwrap().into_inner().access_token;
    let change = ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: NEW_PASSWORD.into() };
    client.change_password(with_bearer(&access, change)).await.unwrap();
    // The mailer writes its delivery log beside the server. On one SQLite file
    // a write of its between a server transaction's read and its write likely
    // fails that transaction (a WAL snapshot conflict, which no busy timeout
    // waits out; seen once as INTERNAL, not reproduced since): let the mailer
    // finish before the next change.
    mailer_done(&pipeline, 2).await;
    let client = &mut pipeline.app.client;
    client.logout_all(with_bearer(&access, LogoutAllRequest {})).await.unwrap();
    let mut operator = admin(&pipeline.app).await;
    let id = || user_id.clone();
    operator.revoke_user_sessions(keyed(RevokeUserSessionsRequest { user_id: id() })).await.unwrap();
    operator.disable_user(keyed(DisableUserRequest { user_id: id() })).await.unwrap();
    // Already disabled: nothing changes, nothing is published.
    operator.disable_user(keyed(DisableUserRequest { user_id: id() })).await.unwrap();
    operator.enable_user(keyed(EnableUserRequest { user_id: id() })).await.unwrap();
    operator.delete_user(keyed(DeleteUserRequest { user_id: id() })).await.unwrap();

    let published = events.take(11).await;
    let types: Vec<&str> = published.iter().map(Event::short_type).collect();
    assert_eq!(
        types,
        [
            "user.signed_up",
            "user.email_verified",
            "session.created",
            "user.password_changed",
            "session.revoked",
            "session.revoked",
            "session.revoked",
            "user.disabled",
            "session.revoked",
            "user.enabled",
            "user.deleted",
        ],
        "once each, in the order the changes were made"
    );
    let mut ids = HashSet::new();
    for event in &published {
        assert_eq!(event.routing_key, event.event_type, "the routing key is the type");
        assert!(event.event_type.starts_with("identity.v1."), "{}", event.event_type);
        assert_eq!(event.content_type, cloud_events::CONTENT_TYPE);
        assert_eq!(event.spec_version, "1.0");
        assert_eq!(event.source, "/identity");
        assert_eq!(event.subject, user_id, "the subject is the user");
        assert!(cloud_events::parse_time(&event.time).is_some(), "RFC 3339: {}", event.time);
        assert!(uuid::Uuid::parse_str(&event.id).is_ok(), "{}", event.id);
        assert!(ids.insert(event.id.clone()), "each event once: {}", event.id);
        let text = String::from_utf8_lossy(&event.body);
        assert!(!text.contains(STRONG_PASSWORD) && !text.contains(NEW_PASSWORD), "no password in {}", event.event_type);
        assert!(!text.contains("$argon2"), "no hash in {}", event.event_type);
    }

    let signed_up = proto::UserSignedUp::decode(published[0].body.as_slice()).unwrap();
    assert_eq!((signed_up.user_id.as_str(), signed_up.email.as_str()), (user_id.as_str(), "ada@example.com"));
    let verified = proto::UserEmailVerified::decode(published[1].body.as_slice()).unwrap();
    assert_eq!(verified.email, "ada@example.com");
    let created = proto::SessionCreated::decode(published[2].body.as_slice()).unwrap();
    assert!(!created.used_second_factor);
    let changed = proto::UserPasswordChanged::decode(published[3].body.as_slice()).unwrap();
    assert!(!changed.was_reset);
    assert_eq!(changed.user_id, user_id);
    let kept = published[4].revoked();
    assert_eq!(kept.reason(), Reason::PasswordChanged);
    assert!(kept.all_sessions);
    assert_eq!(kept.kept_session_id, created.session_id, "the login that changed the password goes on");
    let everywhere = published[5].revoked();
    assert_eq!((everywhere.reason(), everywhere.all_sessions), (Reason::LogoutAll, true));
    assert_eq!(everywhere.kept_session_id, "");
    assert_eq!(published[6].revoked().reason(), Reason::RevokedByAdmin);
    proto::UserDisabled::decode(published[7].body.as_slice()).unwrap();
    assert_eq!(published[8].revoked().reason(), Reason::UserDisabled);
    proto::UserEnabled::decode(published[9].body.as_slice()).unwrap();
    let deleted = proto::UserDeleted::decode(published[10].body.as_slice()).unwrap();
    assert_eq!(deleted.user_id, user_id);
    // The emails (address only in the events about it) went their own way.
    for event in &published[2..] {
        assert!(!String::from_utf8_lossy(&event.body).contains("ada@example.com"), "{}", event.event_type);
    }
    pipeline.stop_mailer().await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Waits until `sql` counts `expected`.
async fn wait_for_count(app: &TestApp, sql: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = count(app, sql).await;
        if found == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sql}: {found}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const UNPUBLISHED_USER_EVENTS: &str =
    "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND stream_position IS NOT NULL";
const UNPUBLISHED_EMAILS: &str = "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND stream_position IS NULL";

async fn user_events_are_published_while_no_mailer_listens_and_with_nobody_bound(backend: Backend) {
    if !broker_available().await {
        return;
    }
    // No mailer: no queue takes the emails, which come back (`mandatory`) and
    // wait in the outbox.
    let names = Names::fresh();
    let Some(mut app) = events_server(backend, &names, &amqp_url()).await else { return };

    // Nobody bound for the events either: the broker confirms them all the same.
    app.client.sign_up(sign_up_request("nobody-listens@example.com")).await.unwrap();
    wait_for_count(&app, UNPUBLISHED_USER_EVENTS, 0).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox WHERE stream_position IS NOT NULL").await, 1);

    let mut events = EventQueue::bind(&names.topology.exchange).await;
    let user = app.client.sign_up(sign_up_request("bound@example.com")).await.unwrap().into_inner().user.unwrap();
    let published = events.take(1).await;
    assert_eq!(published[0].short_type(), "user.signed_up");
    assert_eq!(published[0].subject, user.id);
    // The emails are still stuck: they never held the events up.
    assert_eq!(count(&app, UNPUBLISHED_EMAILS).await, 2);
}

async fn a_users_events_wait_out_a_broker_outage_and_arrive_once_in_order(backend: Backend) {
    if !broker_available().await {
        return;
    }
    // The server reaches RabbitMQ through a port where nothing listens yet.
    let names = Names::fresh();
    let mut events = EventQueue::bind(&names.topology.exchange).await;
    let port = free_port().unwrap();
    let Some(mut app) = events_server(backend, &names, &format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).await
    else {
        return;
    };
    let user_id =
        app.client.sign_up(sign_up_request("patient@example.com")).await.unwrap().into_inner().user.unwrap().id;
    let mut operator = admin(&app).await;
    let id = || user_id.clone();
    for _ in 0..2 {
        operator.disable_user(keyed(DisableUserRequest { user_id: id() })).await.unwrap();
        operator.enable_user(keyed(EnableUserRequest { user_id: id() })).await.unwrap();
    }
    operator.revoke_user_sessions(keyed(RevokeUserSessionsRequest { user_id: id() })).await.unwrap();
    operator.delete_user(keyed(DeleteUserRequest { user_id: id() })).await.unwrap();
    // Every call answered while the broker was away; the relay kept failing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&app, UNPUBLISHED_USER_EVENTS).await, 9);
    assert!(
        count(&app, "SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) FROM outbox WHERE stream_position = 1").await
            >= 1
    );

    // The broker "comes back".
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let _proxy = TcpProxy::start(port, broker).await;
    let published = events.take(9).await;
    let types: Vec<&str> = published.iter().map(Event::short_type).collect();
    assert_eq!(
        types,
        [
            "user.signed_up",
            "user.disabled",
            "session.revoked",
            "user.enabled",
            "user.disabled",
            "session.revoked",
            "user.enabled",
            "session.revoked",
            "user.deleted",
        ]
    );
    assert_eq!(published.iter().map(|e| &e.id).collect::<HashSet<_>>().len(), 9, "each event once");
    wait_for_count(&app, UNPUBLISHED_USER_EVENTS, 0).await;
}

/// A second server on the same database (PostgreSQL only: SQLite is one process).
async fn replica_of(app: &TestApp, names: &Names) -> Option<identity::startup::Application> {
    if !app.database.url().starts_with("postgres") {
        return None;
    }
    let mut settings = crate::helpers::test_settings(&app.database.url());
    settings.amqp = Some(crate::pipeline_helpers::amqp_settings(&amqp_url(), &names.topology.exchange));
    settings.outbox.poll_interval = Duration::from_millis(200);
    settings.server.admin_api_key_hashes = vec![hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()))];
    let overrides = identity::startup::Overrides { clock: None, email_sender: None };
    Some(identity::startup::Application::build(settings, overrides).await.expect("the replica starts"))
}

async fn concurrent_changes_of_one_user_are_published_in_the_order_they_committed(backend: Backend) {
    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    let mut events = EventQueue::bind(&names.topology.exchange).await;
    let Some(mut app) = events_server(backend, &names, &amqp_url()).await else { return };
    let user_id = app.client.sign_up(sign_up_request("busy@example.com")).await.unwrap().into_inner().user.unwrap().id;
    // On PostgreSQL a second replica relays beside the first, and takes half the calls.
    let mut channels = vec![app.channel().await];
    let mut replica_stop = None;
    if let Some(replica) = replica_of(&app, &names).await {
        let port = replica.port();
        replica_stop = Some(replica.shutdown_token());
        tokio::spawn(replica.run_until_stopped());
        channels.push(Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap());
    }

    // Disables and enables of one user, all at once: each that changes the
    // state commits one event (two for a disable), and whichever order they
    // commit in, the states they announce must alternate.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24 {
        let mut operator = AdminServiceClient::new(channels[i % channels.len()].clone());
        let user_id = user_id.clone();
        calls.spawn(async move {
            if i % 2 == 0 {
                operator.disable_user(keyed(DisableUserRequest { user_id })).await.map(|_| ())
            } else {
                operator.enable_user(keyed(EnableUserRequest { user_id })).await.map(|_| ())
            }
        });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap().unwrap();
    }
    // The only user of this database: every user event is theirs.
    let written = count(&app, "SELECT COUNT(*) FROM outbox WHERE stream_position IS NOT NULL").await;
    // The sign-up, and at least one disable (two events) and one enable.
    assert!(written >= 4, "at least one disable and one enable changed something: {written}");
    let published = events.take(usize::try_from(written).unwrap()).await;

    // In the order the relays published: signed up, then disabled (with its
    // sessions ended), enabled, disabled, ... never the same state twice.
    assert_eq!(published[0].short_type(), "user.signed_up");
    let mut is_disabled = false;
    let mut rest = published[1..].iter();
    while let Some(event) = rest.next() {
        if is_disabled {
            assert_eq!(event.short_type(), "user.enabled", "an enable follows a disable");
        } else {
            assert_eq!(event.short_type(), "user.disabled", "a disable follows an enable");
            let revoked = rest.next().expect("the disable's session.revoked");
            assert_eq!(revoked.revoked().reason(), Reason::UserDisabled, "written in the same transaction, next");
        }
        is_disabled = !is_disabled;
    }
    // And exactly in the positions the commits took.
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM outbox WHERE stream_position IS NOT NULL ORDER BY stream_position",
        ))
        .await
        .unwrap();
    let positions: Vec<String> =
        rows.iter().map(|row| row.try_get_by_index::<uuid::Uuid>(0).unwrap().to_string()).collect();
    assert_eq!(published.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), positions);
    if let Some(stop) = replica_stop {
        stop.cancel();
    }
}

/// Waits until SendGrid got `total` emails and the mailer recorded each
/// delivery (it writes its log just after the provider accepted).
async fn mailer_done(pipeline: &Pipeline, total: usize) -> Vec<wiremock::Request> {
    let requests = pipeline.wait_for_requests(total).await;
    wait_for_count(&pipeline.app, "SELECT COUNT(*) FROM mailer_deliveries", i64::try_from(total).unwrap()).await;
    requests
}

/// The token in the email SendGrid got for `to` with `subject`, once there
/// are `total` emails in all (so that the mailer is done writing before the
/// next change: see the note in the first test).
async fn token_sent(pipeline: &Pipeline, total: usize, to: &str, subject: &str) -> Option<String> {
    let requests = mailer_done(pipeline, total).await;
    requests.iter().rev().find_map(|request| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        (recipient_of(request) == to && body["subject"] == subject).then(|| token_in_request(request))
    })
}

async fn address_and_session_changes_publish_their_events(backend: Backend) {
    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    let mut events = EventQueue::bind(&names.topology.exchange).await;
    let Some(app) = events_server(backend, &names, &amqp_url()).await else { return };
    let mut pipeline = Pipeline::with_app(app, sendgrid_accepting().await, names).await;
    let mut client = pipeline.app.client.clone();
    let user_id = client.sign_up(sign_up_request("bob@example.com")).await.unwrap().into_inner().user.unwrap().id;
    let token = token_sent(&pipeline, 1, "bob@example.com", "Confirm your email address").await.unwrap();
    client.verify_email(VerifyEmailRequest { token }).await.unwrap();
    let login =
        |email: &str, password: &str| LoginRequest { email: email.into(), password: password.into(), client: None };

    // A logs out; C is ended by B; B's refresh token is replayed.
    let a = client.login(login("bob@example.com", STRONG_PASSWORD)).await.unwrap().into_inner();
    let b = client.login(login("bob@example.com", STRONG_PASSWORD)).await.unwrap().into_inner();
    client.logout(LogoutRequest { refresh_token: a.refresh_token }).await.unwrap();
    client.login(login("bob@example.com", STRONG_PASSWORD)).await.unwrap();
    let listed = client.list_sessions(with_bearer(&b.access_token, ListSessionsRequest {})).await.unwrap().into_inner();
    let c_id = listed.sessions.iter().find(|s| !s.current).unwrap().id.clone();
    client
        .revoke_session(with_bearer(&b.access_token, RevokeSessionRequest { session_id: c_id.clone() }))
        .await
        .unwrap();
    let refresh = |token: &str| RefreshSessionRequest { refresh_token: token.into(), client: None };
    client.refresh_session(refresh(&b.refresh_token)).await.unwrap();
    // Replayed past the reuse grace (10 s): theft, not a retry.
    pipeline.app.clock.advance(Duration::from_secs(11));
    client.refresh_session(refresh(&b.refresh_token)).await.unwrap_err();

    // D moves the account to another address.
    let d = client.login(login("bob@example.com", STRONG_PASSWORD)).await.unwrap().into_inner();
    let change =
        RequestEmailChangeRequest { new_email: "robert@example.com".into(), current_password: STRONG_PASSWORD.into() };
    client.request_email_change(with_bearer(&d.access_token, change)).await.unwrap();
    // The confirmation link to the new address, the notice to the old one.
    let token = token_sent(&pipeline, 3, "robert@example.com", "Confirm your new email address").await.unwrap();
    client.confirm_email_change(ConfirmEmailChangeRequest { token }).await.unwrap();
    mailer_done(&pipeline, 4).await;

    // A reset, then an operator's change to an unverified address.
    client.request_password_reset(RequestPasswordResetRequest { email: "robert@example.com".into() }).await.unwrap();
    let token = token_sent(&pipeline, 5, "robert@example.com", "Reset your password").await.unwrap();
    client.reset_password(ResetPasswordRequest { token, new_password: NEW_PASSWORD.into() }).await.unwrap();
    mailer_done(&pipeline, 6).await;
    let set = SetUserEmailRequest { user_id: user_id.clone(), email: "bobby@example.com".into(), verified: false };
    admin(&pipeline.app).await.set_user_email(keyed(set)).await.unwrap();
    mailer_done(&pipeline, 8).await;

    let published = events.take(15).await;
    let types: Vec<&str> = published.iter().map(Event::short_type).collect();
    assert_eq!(
        types,
        [
            "user.signed_up",
            "user.email_verified",
            "session.created",
            "session.created",
            "session.revoked",
            "session.created",
            "session.revoked",
            "session.revoked",
            "session.created",
            "user.email_changed",
            "session.revoked",
            "user.password_changed",
            "session.revoked",
            "user.email_changed",
            "session.revoked",
        ]
    );
    assert!(published.iter().all(|event| event.subject == user_id));
    let created = |i: usize| proto::SessionCreated::decode(published[i].body.as_slice()).unwrap().session_id;
    let (a_id, b_id, d_id) = (created(2), created(3), created(8));
    assert_eq!(created(5), c_id);
    let logout = published[4].revoked();
    assert_eq!(
        (logout.reason(), logout.session_id.as_str(), logout.all_sessions),
        (Reason::Logout, a_id.as_str(), false)
    );
    let by_user = published[6].revoked();
    assert_eq!((by_user.reason(), by_user.session_id.as_str()), (Reason::RevokedByUser, c_id.as_str()));
    let reused = published[7].revoked();
    assert_eq!((reused.reason(), reused.session_id.as_str()), (Reason::RefreshTokenReused, b_id.as_str()));
    let moved = proto::UserEmailChanged::decode(published[9].body.as_slice()).unwrap();
    assert_eq!(
        (moved.email.as_str(), moved.previous_email.as_str(), moved.verified),
        ("robert@example.com", "bob@example.com", true)
    );
    let kept = published[10].revoked();
    assert_eq!(
        (kept.reason(), kept.all_sessions, kept.kept_session_id.as_str()),
        (Reason::EmailChanged, true, d_id.as_str())
    );
    let reset = proto::UserPasswordChanged::decode(published[11].body.as_slice()).unwrap();
    assert!(reset.was_reset);
    let after_reset = published[12].revoked();
    assert_eq!(
        (after_reset.reason(), after_reset.all_sessions, after_reset.kept_session_id.as_str()),
        (Reason::PasswordReset, true, "")
    );
    let set_by_operator = proto::UserEmailChanged::decode(published[13].body.as_slice()).unwrap();
    assert_eq!(
        (set_by_operator.email.as_str(), set_by_operator.previous_email.as_str(), set_by_operator.verified),
        ("bobby@example.com", "robert@example.com", false)
    );
    assert_eq!(published[14].revoked().reason(), Reason::EmailChanged);
    pipeline.stop_mailer().await;
}
