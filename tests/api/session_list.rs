//! ListSessions and RevokeSession, and their admin counterparts: what a user
//! sees of their logins, and ending one of them.

use identity::grpc::proto::{
    ClientInfo, ListSessionsRequest, ListUserSessionsRequest, LoginRequest, RefreshSessionRequest,
    RevokeSessionRequest, RevokeUserSessionsRequest, Session,
};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::{
    admin::{admin, admin_app, keyed},
    helpers::{STRONG_PASSWORD, TestApp, is_valid, logged_in, login_tokens, spawn_app, verified_user, with_bearer},
};

on_both_databases!(
    builder = spawn_app;
    sessions_are_listed_newest_login_first_with_their_device_and_the_current_one_marked,
    revoking_a_session_ends_its_refresh_token_and_its_access_tokens_at_once,
    someone_elses_or_an_unknown_session_id_is_not_found,
    a_client_message_out_of_bounds_is_refused_with_a_violation_per_field,
);

on_both_databases!(
    builder = admin_app;
    an_operator_lists_a_users_sessions_and_revokes_them_all,
);

fn client(user_agent: &str, ip_address: &str) -> Option<ClientInfo> {
    Some(ClientInfo { user_agent: user_agent.into(), ip_address: ip_address.into() })
}

async fn login_from(app: &mut TestApp, email: &str, info: Option<ClientInfo>) -> (String, String) {
    let request = LoginRequest { email: email.into(), password: STRONG_PASSWORD.into(), client: info };
    let response = app.client.login(request).await.unwrap().into_inner();
    (response.access_token, response.refresh_token)
}

async fn list(app: &mut TestApp, access: &str) -> Vec<Session> {
    app.client.list_sessions(with_bearer(access, ListSessionsRequest {})).await.unwrap().into_inner().sessions
}

async fn revoke(app: &mut TestApp, access: &str, session_id: &str) -> Result<(), tonic::Status> {
    let request = with_bearer(access, RevokeSessionRequest { session_id: session_id.into() });
    app.client.revoke_session(request).await.map(|_| ())
}

async fn sessions_are_listed_newest_login_first_with_their_device_and_the_current_one_marked(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    let (_, phone_refresh) = login_from(&mut app, "ada@example.com", client("Phone/1.0", "192.0.2.7")).await;
    app.clock.advance(std::time::Duration::from_secs(1));
    // No client message: the transport's user agent and address stand in.
    let (laptop_access, _) = login_from(&mut app, "ada@example.com", None).await;
    app.clock.advance(std::time::Duration::from_secs(1));
    // A refresh keeps the session's id and login time, and records its device.
    let refresh = RefreshSessionRequest { refresh_token: phone_refresh, client: client("Phone/2.0", "2001:db8::7") };
    app.client.refresh_session(refresh).await.unwrap();

    let sessions = list(&mut app, &laptop_access).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let (laptop, phone) = (&sessions[0], &sessions[1]);
    assert!(laptop.current && !phone.current, "{sessions:?}");
    assert!(laptop.user_agent.contains("tonic"), "the gRPC user-agent metadata: {:?}", laptop.user_agent);
    assert_eq!(laptop.client_address, "127.0.0.1");
    assert_eq!(laptop.created_at, laptop.last_used_at, "never refreshed");
    assert_eq!((phone.user_agent.as_str(), phone.client_address.as_str()), ("Phone/2.0", "2001:db8::7"));
    let (created, used) = (phone.created_at.unwrap(), phone.last_used_at.unwrap());
    assert!(used.seconds > created.seconds, "the refresh came after the login: {phone:?}");
    assert!(phone.expires_at.unwrap().seconds > used.seconds);
    assert!(uuid::Uuid::try_parse(&phone.id).is_ok());

    let unauthenticated = app.client.list_sessions(Request::new(ListSessionsRequest {})).await.unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
}

async fn revoking_a_session_ends_its_refresh_token_and_its_access_tokens_at_once(mut app: TestApp) {
    let (_, first_access, first_refresh) = logged_in(&mut app, "ada@example.com").await;
    let (second_access, second_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    // The first login refreshed once: both of its access tokens must die.
    let refreshed = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: first_refresh, client: None })
        .await
        .unwrap()
        .into_inner();
    assert!(is_valid(&mut app, &first_access).await && is_valid(&mut app, &refreshed.access_token).await);
    let first = list(&mut app, &second_access).await.into_iter().find(|s| !s.current).unwrap();

    revoke(&mut app, &second_access, &first.id).await.unwrap();
    assert!(!is_valid(&mut app, &first_access).await);
    assert!(!is_valid(&mut app, &refreshed.access_token).await);
    let refresh = RefreshSessionRequest { refresh_token: refreshed.refresh_token, client: None };
    assert_eq!(app.client.refresh_session(refresh).await.unwrap_err().code(), Code::Unauthenticated);
    let left = list(&mut app, &second_access).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].current);
    // Ended already: the same answer as for an id that never was.
    assert_eq!(revoke(&mut app, &second_access, &first.id).await.unwrap_err().code(), Code::NotFound);

    // The caller may end their own current session too.
    revoke(&mut app, &second_access, &left[0].id).await.unwrap();
    assert!(!is_valid(&mut app, &second_access).await);
    let refresh = RefreshSessionRequest { refresh_token: second_refresh, client: None };
    assert_eq!(app.client.refresh_session(refresh).await.unwrap_err().code(), Code::Unauthenticated);
}

async fn someone_elses_or_an_unknown_session_id_is_not_found(mut app: TestApp) {
    let (_, ada, _) = logged_in(&mut app, "ada@example.com").await;
    let (_, bob, _) = logged_in(&mut app, "bob@example.com").await;
    let bobs = list(&mut app, &bob).await.remove(0);

    let foreign = revoke(&mut app, &ada, &bobs.id).await.unwrap_err();
    let unknown = revoke(&mut app, &ada, &uuid::Uuid::now_v7().to_string()).await.unwrap_err();
    assert_eq!((foreign.code(), foreign.message()), (unknown.code(), unknown.message()));
    assert_eq!(foreign.code(), Code::NotFound);
    assert!(is_valid(&mut app, &bob).await, "bob's session survives");

    let garbage = revoke(&mut app, &ada, "not-a-uuid").await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);
    assert_eq!(garbage.get_details_bad_request().unwrap().field_violations[0].field, "session_id");
}

async fn a_client_message_out_of_bounds_is_refused_with_a_violation_per_field(mut app: TestApp) {
    let (_, _, refresh) = logged_in(&mut app, "ada@example.com").await;
    let too_long = "a".repeat(257);
    let request = LoginRequest {
        email: "ada@example.com".into(),
        password: STRONG_PASSWORD.into(),
        client: client(&too_long, "300.1.2.3"),
    };
    let status = app.client.login(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields: Vec<_> =
        status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    fields.sort();
    assert_eq!(fields, ["client.ip_address", "client.user_agent"]);

    let refresh = RefreshSessionRequest { refresh_token: refresh, client: client("bad\u{7}agent", "") };
    let status = app.client.refresh_session(refresh).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // 256 characters are fine.
    let (access, _) = login_from(&mut app, "ada@example.com", client(&"é".repeat(256), "")).await;
    assert!(list(&mut app, &access).await.iter().any(|s| s.user_agent.chars().count() == 256));
}

async fn an_operator_lists_a_users_sessions_and_revokes_them_all(mut app: TestApp) {
    let (user_id, first, _) = logged_in(&mut app, "ada@example.com").await;
    let (second, _) = login_from(&mut app, "ada@example.com", client("Tablet/3", "198.51.100.4")).await;
    let mut admin = admin(&app).await;

    let listed = admin
        .list_user_sessions(keyed(ListUserSessionsRequest { user_id: user_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| !s.current));
    assert_eq!((listed[0].user_agent.as_str(), listed[0].client_address.as_str()), ("Tablet/3", "198.51.100.4"));

    let revoked = admin
        .revoke_user_sessions(keyed(RevokeUserSessionsRequest { user_id: user_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_sessions, 2);
    assert!(!is_valid(&mut app, &first).await && !is_valid(&mut app, &second).await);
    let listed = admin.list_user_sessions(keyed(ListUserSessionsRequest { user_id })).await.unwrap().into_inner();
    assert!(listed.sessions.is_empty());

    let unknown = uuid::Uuid::now_v7().to_string();
    let status = admin.list_user_sessions(keyed(ListUserSessionsRequest { user_id: unknown.clone() })).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    let status = admin.revoke_user_sessions(keyed(RevokeUserSessionsRequest { user_id: unknown })).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    let unkeyed = admin.list_user_sessions(Request::new(ListUserSessionsRequest { user_id: "x".into() })).await;
    assert_eq!(unkeyed.unwrap_err().code(), Code::Unauthenticated);
}
