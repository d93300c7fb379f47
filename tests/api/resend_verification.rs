use std::time::Duration;

use identity::grpc::proto::{ResendVerificationEmailRequest, VerifyEmailRequest};
use tonic::Code;

use testkit::on_both_databases;

use crate::helpers::{TestApp, sign_up_request, spawn_app, token_in, verified_user};

on_both_databases!(
    builder = spawn_app;
    a_resent_link_replaces_the_earlier_ones,
    resending_reveals_nothing_about_the_address,
    resends_respect_the_cooldown_and_the_hourly_cap,
    invalid_addresses_are_invalid_arguments,
);

fn resend(email: &str) -> ResendVerificationEmailRequest {
    ResendVerificationEmailRequest { email: email.into() }
}

async fn a_resent_link_replaces_the_earlier_ones(mut app: TestApp) {
    app.client.sign_up(sign_up_request("ada@example.com")).await.unwrap();
    let first = token_in(&app.emails.wait_for(1).await[0]);
    app.clock.advance(Duration::from_secs(61));
    app.client.resend_verification_email(resend("ADA@example.com")).await.unwrap();
    let emails = app.emails.wait_for(2).await;
    let second = token_in(&emails[1]);
    assert_ne!(first, second);
    assert_eq!(emails[1].to.as_str(), "ada@example.com");

    let old = app.client.verify_email(VerifyEmailRequest { token: first }).await.unwrap_err();
    assert_eq!(old.code(), Code::InvalidArgument);
    app.client.verify_email(VerifyEmailRequest { token: second }).await.unwrap();
}

async fn resending_reveals_nothing_about_the_address(mut app: TestApp) {
    verified_user(&mut app, "verified@example.com").await;
    app.clock.advance(Duration::from_secs(120));
    // Unknown and already verified addresses answer OK and get nothing.
    app.client.resend_verification_email(resend("nobody@example.com")).await.unwrap();
    app.client.resend_verification_email(resend("verified@example.com")).await.unwrap();
    assert_eq!(app.emails.settle().await.len(), 1, "only the sign-up email");
}

async fn resends_respect_the_cooldown_and_the_hourly_cap(mut app: TestApp) {
    app.client.sign_up(sign_up_request("eager@example.com")).await.unwrap();
    app.emails.wait_for(1).await;

    // Inside the 60 s cooldown: OK, nothing sent.
    app.clock.advance(Duration::from_secs(30));
    app.client.resend_verification_email(resend("eager@example.com")).await.unwrap();
    assert_eq!(app.emails.settle().await.len(), 1);

    // Past it, four more fit in the hour (five in all, the sign-up's included).
    for expected in 2..=5 {
        app.clock.advance(Duration::from_secs(61));
        app.client.resend_verification_email(resend("eager@example.com")).await.unwrap();
        app.emails.wait_for(expected).await;
    }
    app.clock.advance(Duration::from_secs(61));
    app.client.resend_verification_email(resend("eager@example.com")).await.unwrap();
    assert_eq!(app.emails.settle().await.len(), 5, "the sixth within the hour is not sent");

    // An hour after the first, the window has room again.
    app.clock.advance(Duration::from_secs(3600));
    app.client.resend_verification_email(resend("eager@example.com")).await.unwrap();
    app.emails.wait_for(6).await;
}

async fn invalid_addresses_are_invalid_arguments(mut app: TestApp) {
    let status = app.client.resend_verification_email(resend("not an email")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
