use std::time::Duration;

use identity::grpc::proto::{LogoutAllRequest, LogoutRequest, RefreshSessionRequest};
use tonic::Code;

use testkit::on_both_databases;

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, is_valid, logged_in, login_tokens, spawn_app, spawn_app_with, with_bearer,
};

on_both_databases!(
    builder = spawn_app;
    a_refresh_rotates_both_tokens_and_a_token_replayed_after_the_grace_revokes_the_family,
    logout_ends_one_session,
    expired_refresh_tokens_are_refused,
    logout_all_ends_every_session_and_every_earlier_access_token,
);

on_both_databases!(builder = strict_app; without_a_grace_concurrent_refreshes_with_one_token_succeed_once);

/// `IDENTITY_REFRESH_REUSE_GRACE=0`: every second presentation is theft.
async fn strict_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| s.tokens.refresh_reuse_grace = Duration::ZERO).await
}

/// Just past the default `IDENTITY_REFRESH_REUSE_GRACE` (10 s).
const PAST_THE_GRACE: Duration = Duration::from_secs(11);

fn refresh(token: &str) -> RefreshSessionRequest {
    RefreshSessionRequest { refresh_token: token.into(), client: None }
}

async fn a_refresh_rotates_both_tokens_and_a_token_replayed_after_the_grace_revokes_the_family(mut app: TestApp) {
    let (user_id, _, first) = logged_in(&mut app, "ada@example.com").await;
    let rotated = app.client.refresh_session(refresh(&first)).await.unwrap().into_inner();
    assert_ne!(rotated.refresh_token, first);
    assert_eq!(rotated.user.unwrap().id, user_id);
    assert!(is_valid(&mut app, &rotated.access_token).await);

    // The old token again, later than a retry would come: theft. The whole
    // family goes, the new token included.
    app.clock.advance(PAST_THE_GRACE);
    let replay = app.client.refresh_session(refresh(&first)).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated);
    let descendant = app.client.refresh_session(refresh(&rotated.refresh_token)).await.unwrap_err();
    assert_eq!(descendant.code(), Code::Unauthenticated);

    // Another login is another family, untouched.
    let (_, other) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    app.client.refresh_session(refresh(&other)).await.unwrap();
}

async fn without_a_grace_concurrent_refreshes_with_one_token_succeed_once(mut app: TestApp) {
    let (_, _, token) = logged_in(&mut app, "ada@example.com").await;
    let calls = (0..10).map(|_| {
        let mut client = app.client.clone();
        let token = token.clone();
        tokio::spawn(async move { client.refresh_session(refresh(&token)).await })
    });
    let mut succeeded = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        }
    }
    assert_eq!(succeeded, 1);
}

async fn logout_ends_one_session(mut app: TestApp) {
    let (_, _, first) = logged_in(&mut app, "ada@example.com").await;
    let (_, second) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    app.client.logout(LogoutRequest { refresh_token: first.clone() }).await.unwrap();
    assert_eq!(app.client.refresh_session(refresh(&first)).await.unwrap_err().code(), Code::Unauthenticated);
    let again = app.client.logout(LogoutRequest { refresh_token: first }).await.unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated);
    app.client.refresh_session(refresh(&second)).await.unwrap();
    let garbage = app.client.logout(LogoutRequest { refresh_token: "nope".into() }).await.unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
}

async fn expired_refresh_tokens_are_refused(mut app: TestApp) {
    let (_, _, token) = logged_in(&mut app, "ada@example.com").await;
    app.clock.advance(Duration::from_secs(30 * 86_400));
    assert_eq!(app.client.refresh_session(refresh(&token)).await.unwrap_err().code(), Code::Unauthenticated);
}

async fn logout_all_ends_every_session_and_every_earlier_access_token(mut app: TestApp) {
    let (_, first_access, first_refresh) = logged_in(&mut app, "ada@example.com").await;
    let (second_access, second_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    app.clock.advance(Duration::from_millis(5));

    let response = app.client.logout_all(with_bearer(&first_access, LogoutAllRequest {})).await.unwrap().into_inner();
    assert_eq!(response.revoked_sessions, 2);
    for access in [&first_access, &second_access] {
        assert!(!is_valid(&mut app, access).await, "an access token issued before LogoutAll still works");
    }
    for refresh_token in [&first_refresh, &second_refresh] {
        assert_eq!(app.client.refresh_session(refresh(refresh_token)).await.unwrap_err().code(), Code::Unauthenticated);
    }
    let unauthenticated = app.client.logout_all(tonic::Request::new(LogoutAllRequest {})).await.unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    // Logging in afterwards works as usual.
    app.clock.advance(Duration::from_millis(5));
    let (fresh, _) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    assert!(is_valid(&mut app, &fresh).await);
}
