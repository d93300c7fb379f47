use std::time::Duration;

use identity::grpc::proto::{GetCurrentUserRequest, GetPublicKeysRequest, LoginRequest, ValidateTokenRequest};
use tonic::{Code, Request};

use testkit::on_both_databases;

use crate::helpers::{STRONG_PASSWORD, TestApp, spawn_app, verified_user};

on_both_databases!(
    builder = spawn_app;
    validate_token_returns_the_claims_that_matter,
    expired_and_forged_tokens_are_unauthenticated,
    public_keys_name_the_key_in_the_token_footer,
    get_current_user_reads_the_bearer_token,
);

async fn access_token(app: &mut TestApp, email: &str) -> (String, String) {
    let user_id = verified_user(app, email).await;
    let login = LoginRequest { email: email.into(), password: STRONG_PASSWORD.into(), client: None };
    (user_id, app.client.login(login).await.unwrap().into_inner().access_token)
}

fn validate(token: &str) -> ValidateTokenRequest {
    ValidateTokenRequest { access_token: token.into() }
}

async fn validate_token_returns_the_claims_that_matter(mut app: TestApp) {
    let (user_id, token) = access_token(&mut app, "ada@example.com").await;
    let claims = app.client.validate_token(validate(&token)).await.unwrap().into_inner();
    assert_eq!(claims.user_id, user_id);
    assert_eq!(claims.issuer, "identity");
    assert_eq!(claims.audience, "identity");
    assert!(claims.key_id.starts_with("k4.pid."));
    assert!(uuid::Uuid::try_parse(&claims.token_id).is_ok());
    let (issued, expires) = (claims.issued_at.unwrap().seconds, claims.expires_at.unwrap().seconds);
    assert_eq!(expires - issued, 600);
}

async fn expired_and_forged_tokens_are_unauthenticated(mut app: TestApp) {
    let (_, token) = access_token(&mut app, "ada@example.com").await;
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let local = "v4.local.".to_owned() + &token["v4.public.".len()..];
    for bad in [
        forged.as_str(),
        local.as_str(),
        "v4.public.",
        "garbage",
        "v2.public.eyJkYXRhIjoidGhpcyBpcyBhIHNpZ25lZCBtZXNzYWdlIn0",
    ] {
        let status = app.client.validate_token(validate(bad)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
    }
    let empty = app.client.validate_token(validate("")).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);

    app.clock.advance(Duration::from_secs(600 + 31));
    let expired = app.client.validate_token(validate(&token)).await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
}

async fn public_keys_name_the_key_in_the_token_footer(mut app: TestApp) {
    let (_, token) = access_token(&mut app, "ada@example.com").await;
    let keys = app.client.get_public_keys(GetPublicKeysRequest {}).await.unwrap().into_inner().keys;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].public_key.starts_with("k4.public."));
    let claims = app.client.validate_token(validate(&token)).await.unwrap().into_inner();
    assert_eq!(claims.key_id, keys[0].kid);
}

async fn get_current_user_reads_the_bearer_token(mut app: TestApp) {
    let (user_id, token) = access_token(&mut app, "ada@example.com").await;
    let mut request = Request::new(GetCurrentUserRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let user = app.client.get_current_user(request).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.id, user_id);
    assert_eq!(user.email, "ada@example.com");

    let missing = app.client.get_current_user(Request::new(GetCurrentUserRequest {})).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let mut wrong = Request::new(GetCurrentUserRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer v4.public.nope".parse().unwrap());
    assert_eq!(app.client.get_current_user(wrong).await.unwrap_err().code(), Code::Unauthenticated);
}
