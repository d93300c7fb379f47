use std::time::Duration;

use identity::grpc::proto::{UserStatus, VerifyEmailRequest};
use tonic::Code;

use testkit::on_both_databases;

use crate::helpers::{TestApp, sign_up_request, spawn_app, token_in};

on_both_databases!(
    builder = spawn_app;
    verifying_activates_the_user_and_the_token_works_once,
    expired_tokens_are_refused,
    unknown_and_malformed_tokens_are_refused_alike,
    twenty_concurrent_verifications_with_one_token_succeed_once,
);

async fn verifying_activates_the_user_and_the_token_works_once(mut app: TestApp) {
    app.client.sign_up(sign_up_request("ada@example.com")).await.unwrap();
    let token = token_in(&app.emails.wait_for(1).await[0]);
    let user =
        app.client.verify_email(VerifyEmailRequest { token: token.clone() }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.status(), UserStatus::Active);
    assert!(user.verified_at.is_some());

    let again = app.client.verify_email(VerifyEmailRequest { token }).await.unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument);
}

async fn expired_tokens_are_refused(mut app: TestApp) {
    app.client.sign_up(sign_up_request("late@example.com")).await.unwrap();
    let token = token_in(&app.emails.wait_for(1).await[0]);
    app.clock.advance(Duration::from_secs(24 * 3600));
    let status = app.client.verify_email(VerifyEmailRequest { token }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn unknown_and_malformed_tokens_are_refused_alike(mut app: TestApp) {
    let unknown = "A".repeat(43);
    for token in [unknown.as_str(), "", "short", "not base64 at all!!", &"x".repeat(10_000)] {
        let status = app.client.verify_email(VerifyEmailRequest { token: token.into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", &token[..token.len().min(20)]);
        assert_eq!(status.message(), "invalid, used or expired verification token");
    }
    // Past the 64 KiB message limit the transport refuses it, still not INTERNAL.
    let huge = app.client.verify_email(VerifyEmailRequest { token: "x".repeat(100_000) }).await.unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
}

async fn twenty_concurrent_verifications_with_one_token_succeed_once(mut app: TestApp) {
    app.client.sign_up(sign_up_request("once@example.com")).await.unwrap();
    let token = token_in(&app.emails.wait_for(1).await[0]);
    let calls = (0..20).map(|_| {
        let mut client = app.client.clone();
        let token = token.clone();
        tokio::spawn(async move { client.verify_email(VerifyEmailRequest { token }).await })
    });
    let mut verified = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => verified += 1,
            Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?}"),
        }
    }
    assert_eq!(verified, 1);
}
