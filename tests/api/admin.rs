use identity::grpc::proto::{
    DeleteUserRequest, DisableUserRequest, EnableUserRequest, GetUserRequest, ListUsersRequest, LoginRequest,
    UserStatus, admin_service_client::AdminServiceClient,
};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{Backend, STRONG_PASSWORD, TestApp, is_valid, logged_in, sign_up_request, spawn_app_with};

const ADMIN_KEY: &str = "test-admin-key-0123456789";

on_both_databases!(
    builder = admin_app;
    a_disabled_user_cannot_log_in_or_use_tokens_until_enabled,
    users_are_listed_page_by_page_with_filters,
    deleting_a_user_removes_them_and_frees_the_address,
    bad_ids_and_unknown_users_get_precise_errors,
);

pub async fn admin_app(backend: Backend) -> Option<TestApp> {
    let hash: String = hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()));
    spawn_app_with(backend, move |s| s.server.admin_api_key_hashes = vec![hash]).await
}

pub async fn admin(app: &TestApp) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(app.channel().await)
}

pub fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", ADMIN_KEY.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_a_configured_and_matching_key() {
    let Some(unconfigured) = spawn_app_with(Backend::Sqlite, |_| {}).await else { return };
    let status = admin(&unconfigured)
        .await
        .get_user(keyed(GetUserRequest { user_id: uuid::Uuid::nil().to_string(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let Some(app) = admin_app(Backend::Sqlite).await else { return };
    let mut client = admin(&app).await;
    let request = || GetUserRequest { user_id: uuid::Uuid::nil().to_string(), ..Default::default() };
    assert_eq!(client.get_user(Request::new(request())).await.unwrap_err().code(), Code::Unauthenticated);
    let mut wrong = Request::new(request());
    wrong.metadata_mut().insert("x-api-key", "not-the-key".parse().unwrap());
    assert_eq!(client.get_user(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(client.get_user(keyed(request())).await.unwrap_err().code(), Code::NotFound);
}

async fn a_disabled_user_cannot_log_in_or_use_tokens_until_enabled(mut app: TestApp) {
    let (user_id, access, refresh) = logged_in(&mut app, "ada@example.com").await;
    let mut client = admin(&app).await;
    let user = client
        .disable_user(keyed(DisableUserRequest { user_id: user_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.status(), UserStatus::Disabled);

    let login = || LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
    let refused = app.client.login(login()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.get_error_details().error_info().unwrap().reason, "ACCOUNT_DISABLED");
    assert!(!is_valid(&mut app, &access).await);
    let refreshed = app
        .client
        .refresh_session(identity::grpc::proto::RefreshSessionRequest { refresh_token: refresh, client: None })
        .await;
    assert_eq!(refreshed.unwrap_err().code(), Code::Unauthenticated);

    let user = client.enable_user(keyed(EnableUserRequest { user_id })).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.status(), UserStatus::Active);
    app.clock.advance(std::time::Duration::from_millis(5));
    let fresh = app.client.login(login()).await.unwrap().into_inner();
    assert!(is_valid(&mut app, &fresh.access_token).await);
}

async fn users_are_listed_page_by_page_with_filters(mut app: TestApp) {
    for i in 0..7 {
        app.client.sign_up(sign_up_request(&format!("page{i}@example.com"))).await.unwrap();
    }
    app.client.sign_up(sign_up_request("other_1@example.com")).await.unwrap();
    app.client.sign_up(sign_up_request("otherx1@example.com")).await.unwrap();
    let mut client = admin(&app).await;
    let page = |token: String| ListUsersRequest {
        page_size: 3,
        page_token: token,
        email_prefix: "PAGE".into(),
        ..Default::default()
    };

    let first = client.list_users(keyed(page(String::new()))).await.unwrap().into_inner();
    assert_eq!(first.users.len(), 3);
    // Users created between pages come after the cursor, never twice.
    app.client.sign_up(sign_up_request("page7@example.com")).await.unwrap();
    let mut seen: Vec<String> = first.users.iter().map(|u| u.email.clone()).collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let next = client.list_users(keyed(page(token))).await.unwrap().into_inner();
        seen.extend(next.users.iter().map(|u| u.email.clone()));
        token = next.next_page_token;
    }
    let expected: Vec<String> = (0..8).map(|i| format!("page{i}@example.com")).collect();
    assert_eq!(seen, expected);

    // A prefix is matched literally: "_" is not a wildcard.
    let literal = ListUsersRequest { email_prefix: "other_".into(), ..Default::default() };
    let found = client.list_users(keyed(literal)).await.unwrap().into_inner().users;
    assert_eq!(found.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(), ["other_1@example.com"]);

    let active = ListUsersRequest { status: UserStatus::Active.into(), ..Default::default() };
    assert!(client.list_users(keyed(active)).await.unwrap().into_inner().users.is_empty());

    let first = client.list_users(keyed(page(String::new()))).await.unwrap().into_inner();
    let other_filter =
        ListUsersRequest { page_token: first.next_page_token, email_prefix: "x".into(), ..Default::default() };
    assert_eq!(client.list_users(keyed(other_filter)).await.unwrap_err().code(), Code::InvalidArgument);
    let bad = ListUsersRequest { page_token: "garbage".into(), ..Default::default() };
    assert_eq!(client.list_users(keyed(bad)).await.unwrap_err().code(), Code::InvalidArgument);
    let huge = ListUsersRequest { page_size: 10_000, ..Default::default() };
    assert_eq!(client.list_users(keyed(huge)).await.unwrap_err().code(), Code::InvalidArgument);
}

async fn deleting_a_user_removes_them_and_frees_the_address(mut app: TestApp) {
    let (user_id, access, _) = logged_in(&mut app, "ada@example.com").await;
    let mut client = admin(&app).await;
    client.delete_user(keyed(DeleteUserRequest { user_id: user_id.clone() })).await.unwrap();
    let gone =
        client.get_user(keyed(GetUserRequest { user_id: user_id.clone(), ..Default::default() })).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(!is_valid(&mut app, &access).await);
    let again = client.delete_user(keyed(DeleteUserRequest { user_id: user_id.clone() })).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    app.client.sign_up(sign_up_request("ada@example.com")).await.expect("the address is free again");

    // Other services hear of it through a user.deleted event, with no personal data.
    use base64::Engine;
    use prost::Message;
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox WHERE event_type = 'identity.v1.user.deleted'",
        ))
        .await
        .unwrap()
        .expect("a user.deleted event in the outbox");
    let payload: String = row.try_get("", "payload").unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(payload).unwrap();
    let deleted = identity::infrastructure::outbox::user_events::proto::UserDeleted::decode(bytes.as_slice()).unwrap();
    assert_eq!(deleted.user_id, user_id);
    assert!(!String::from_utf8_lossy(&bytes).contains("ada@"), "no address in {deleted:?}");
}

async fn bad_ids_and_unknown_users_get_precise_errors(app: TestApp) {
    let mut client = admin(&app).await;
    let bad = client
        .get_user(keyed(GetUserRequest { user_id: "not-a-uuid".into(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad.get_error_details().bad_request().unwrap().field_violations[0].field, "user_id");
    let unknown = uuid::Uuid::now_v7().to_string();
    for status in [
        client.disable_user(keyed(DisableUserRequest { user_id: unknown.clone() })).await.unwrap_err(),
        client.enable_user(keyed(EnableUserRequest { user_id: unknown.clone() })).await.unwrap_err(),
        client.delete_user(keyed(DeleteUserRequest { user_id: unknown.clone() })).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_admin_keys_are_logged_with_the_callers_address_and_never_the_key() {
    use crate::process_logs::{LoggedProcess, TempDatabase, message_of, server_command};

    let database = TempDatabase::new();
    let port = testkit::free_port().unwrap();
    let hash: String = hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()));
    let mut server =
        LoggedProcess::start(server_command(port, &database.0, &[("IDENTITY_ADMIN_API_KEY_HASHES", &hash)]));
    server.until_message("identity server listening").await;

    let mut client = AdminServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    let wrong_key = "wrong-admin-key-guessed-7f3a";
    let mut request = Request::new(GetUserRequest { user_id: uuid::Uuid::nil().to_string(), ..Default::default() });
    request.metadata_mut().insert("x-api-key", wrong_key.parse().unwrap());
    assert_eq!(client.get_user(request).await.unwrap_err().code(), Code::Unauthenticated);
    let request = Request::new(GetUserRequest { user_id: uuid::Uuid::nil().to_string(), ..Default::default() });
    assert_eq!(client.get_user(request).await.unwrap_err().code(), Code::Unauthenticated);
    let log = server.stop().await;

    assert!(log.iter().all(|line| !line.contains(wrong_key) && !line.contains(ADMIN_KEY)), "a key leaked into the log");
    for message in ["admin call refused: unknown API key", "admin call refused: no x-api-key"] {
        let line = log
            .iter()
            .find(|line| message_of(line).as_deref() == Some(message))
            .unwrap_or_else(|| panic!("no {message:?} line in\n{}", log.join("\n")));
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["client_address"], "127.0.0.1", "{line}");
        assert_eq!(value["level"], "WARN", "{line}");
        assert!(value.get("request_id").is_some(), "{line}");
    }
}
