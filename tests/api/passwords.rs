use std::time::Duration;

use identity::grpc::proto::{
    ChangePasswordRequest, LoginRequest, RefreshSessionRequest, RequestPasswordResetRequest, ResetPasswordRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{
    STRONG_PASSWORD, TestApp, emails_to, is_valid, logged_in, login_tokens, sign_up_request, spawn_app, token_in,
    wait_for_email, with_bearer,
};

on_both_databases!(
    builder = spawn_app;
    changing_the_password_needs_the_current_one_and_ends_the_other_sessions,
    a_password_reset_sets_the_password_once_and_ends_every_session,
    reset_links_expire_and_need_a_new_password,
    reset_requests_reveal_nothing_and_send_only_to_active_users,
);

const NEW_PASSWORD: &str = "saffron-glacier-piano-88";
const RESET_SUBJECT: &str = "Reset your password";
const CHANGED_SUBJECT: &str = "Your password was changed";

fn violation_field(status: &tonic::Status) -> String {
    status.get_error_details().bad_request().expect("BadRequest details").field_violations[0].field.clone()
}

fn change(current: &str, new: &str) -> ChangePasswordRequest {
    ChangePasswordRequest { current_password: current.into(), new_password: new.into() }
}

async fn changing_the_password_needs_the_current_one_and_ends_the_other_sessions(mut app: TestApp) {
    let (_, access, own_refresh) = logged_in(&mut app, "ada@example.com").await;
    let (_, other_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;

    let wrong =
        app.client.change_password(with_bearer(&access, change("not-my-password", NEW_PASSWORD))).await.unwrap_err();
    assert_eq!((wrong.code(), violation_field(&wrong)), (Code::InvalidArgument, "current_password".to_owned()));
    let same =
        app.client.change_password(with_bearer(&access, change(STRONG_PASSWORD, STRONG_PASSWORD))).await.unwrap_err();
    assert_eq!((same.code(), violation_field(&same)), (Code::InvalidArgument, "new_password".to_owned()));
    let weak =
        app.client.change_password(with_bearer(&access, change(STRONG_PASSWORD, "password1234"))).await.unwrap_err();
    assert_eq!((weak.code(), violation_field(&weak)), (Code::InvalidArgument, "new_password".to_owned()));
    let anonymous =
        app.client.change_password(tonic::Request::new(change(STRONG_PASSWORD, NEW_PASSWORD))).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    app.client.change_password(with_bearer(&access, change(STRONG_PASSWORD, NEW_PASSWORD))).await.unwrap();
    let old = LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
    assert_eq!(app.client.login(old).await.unwrap_err().code(), Code::Unauthenticated);
    login_tokens(&mut app, "ada@example.com", NEW_PASSWORD).await;
    // The caller's session lives on; the other one is over.
    app.client.refresh_session(RefreshSessionRequest { refresh_token: own_refresh, client: None }).await.unwrap();
    let other = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: other_refresh, client: None })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::Unauthenticated);
    wait_for_email(&app, "ada@example.com", CHANGED_SUBJECT).await;
}

async fn request_reset(app: &mut TestApp, email: &str) {
    app.client.request_password_reset(RequestPasswordResetRequest { email: email.into() }).await.unwrap();
}

async fn a_password_reset_sets_the_password_once_and_ends_every_session(mut app: TestApp) {
    let (_, access, refresh) = logged_in(&mut app, "ada@example.com").await;
    app.clock.advance(Duration::from_millis(5));
    request_reset(&mut app, "ADA@example.com").await;
    let email = wait_for_email(&app, "ada@example.com", RESET_SUBJECT).await;
    assert!(email.text_body.contains("http://localhost:3000/reset-password?token="), "{}", email.text_body);
    let token = token_in(&email);

    let reset = ResetPasswordRequest { token: token.clone(), new_password: NEW_PASSWORD.into() };
    app.client.reset_password(reset.clone()).await.unwrap();
    assert!(!is_valid(&mut app, &access).await, "access tokens issued before the reset are refused");
    let stale =
        app.client.refresh_session(RefreshSessionRequest { refresh_token: refresh, client: None }).await.unwrap_err();
    assert_eq!(stale.code(), Code::Unauthenticated);
    app.clock.advance(Duration::from_millis(5));
    let (fresh, _) = login_tokens(&mut app, "ada@example.com", NEW_PASSWORD).await;
    assert!(is_valid(&mut app, &fresh).await);

    let again = app.client.reset_password(reset).await.unwrap_err();
    assert_eq!((again.code(), violation_field(&again)), (Code::InvalidArgument, "token".to_owned()));
    wait_for_email(&app, "ada@example.com", "Your password was reset").await;
}

async fn reset_links_expire_and_need_a_new_password(mut app: TestApp) {
    logged_in(&mut app, "ada@example.com").await;
    request_reset(&mut app, "ada@example.com").await;
    let token = token_in(&wait_for_email(&app, "ada@example.com", RESET_SUBJECT).await);

    let same = ResetPasswordRequest { token: token.clone(), new_password: STRONG_PASSWORD.into() };
    let status = app.client.reset_password(same).await.unwrap_err();
    assert_eq!((status.code(), violation_field(&status)), (Code::InvalidArgument, "new_password".to_owned()));

    app.clock.advance(Duration::from_secs(3600));
    let late = ResetPasswordRequest { token, new_password: NEW_PASSWORD.into() };
    let status = app.client.reset_password(late).await.unwrap_err();
    assert_eq!((status.code(), violation_field(&status)), (Code::InvalidArgument, "token".to_owned()));
    let garbage = ResetPasswordRequest { token: "garbage".into(), new_password: NEW_PASSWORD.into() };
    assert_eq!(app.client.reset_password(garbage).await.unwrap_err().code(), Code::InvalidArgument);
}

async fn reset_requests_reveal_nothing_and_send_only_to_active_users(mut app: TestApp) {
    app.client.sign_up(sign_up_request("pending@example.com")).await.unwrap();
    request_reset(&mut app, "nobody@example.com").await;
    request_reset(&mut app, "pending@example.com").await;
    app.emails.settle().await;
    assert!(emails_to(&app, "pending@example.com", RESET_SUBJECT).is_empty());
    assert!(emails_to(&app, "nobody@example.com", RESET_SUBJECT).is_empty());
    let invalid =
        app.client.request_password_reset(RequestPasswordResetRequest { email: "nope".into() }).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
}
