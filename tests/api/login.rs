use identity::grpc::proto::{LoginRequest, UserStatus};
use tonic::Code;
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{STRONG_PASSWORD, TestApp, sign_up_request, spawn_app, verified_user};

on_both_databases!(
    builder = spawn_app;
    login_is_refused_until_the_email_is_verified,
    an_unverified_account_reveals_nothing_without_the_right_password,
    unknown_email_and_wrong_password_get_the_same_answer,
    login_returns_tokens_that_other_services_can_check,
    malformed_login_input_is_an_invalid_argument,
);

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest { email: email.into(), password: password.into(), client: None }
}

async fn login_is_refused_until_the_email_is_verified(mut app: TestApp) {
    app.client.sign_up(sign_up_request("ada@example.com")).await.unwrap();
    let status = app.client.login(login("ada@example.com", STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.get_error_details().error_info().expect("ErrorInfo").reason, "EMAIL_NOT_VERIFIED");
}

async fn an_unverified_account_reveals_nothing_without_the_right_password(mut app: TestApp) {
    app.client.sign_up(sign_up_request("ada@example.com")).await.unwrap();
    let status = app.client.login(login("ada@example.com", "wrong-password-123")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.get_error_details().error_info().is_none());
}

async fn unknown_email_and_wrong_password_get_the_same_answer(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    let wrong_password = app.client.login(login("ada@example.com", "wrong-password-123")).await.unwrap_err();
    let unknown_email = app.client.login(login("nobody@example.com", STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(unknown_email.code(), wrong_password.code());
    assert_eq!(unknown_email.message(), wrong_password.message());
    assert_eq!(unknown_email.details(), wrong_password.details());
}

async fn login_returns_tokens_that_other_services_can_check(mut app: TestApp) {
    let user_id = verified_user(&mut app, "ada@example.com").await;
    let response = app.client.login(login("ADA@example.com", STRONG_PASSWORD)).await.unwrap().into_inner();
    assert!(response.access_token.starts_with("v4.public."));
    assert_eq!(response.refresh_token.len(), 43);
    let user = response.user.unwrap();
    assert_eq!(user.id, user_id);
    assert_eq!(user.status(), UserStatus::Active);

    let access_expiry = response.access_token_expires_at.unwrap().seconds;
    let refresh_expiry = response.refresh_token_expires_at.unwrap().seconds;
    let created = user.created_at.unwrap().seconds;
    assert_eq!(access_expiry - created, 600, "10 minute access tokens by default");
    assert_eq!(refresh_expiry - created, 30 * 86_400, "30 day refresh tokens by default");

    let claims = app
        .client
        .validate_token(identity::grpc::proto::ValidateTokenRequest { access_token: response.access_token })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claims.user_id, user_id);
}

async fn malformed_login_input_is_an_invalid_argument(mut app: TestApp) {
    let status = app.client.login(login("", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<_> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["email", "password"]);
    let status = app.client.login(login("ada@example.com", &"x".repeat(1000))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
