use identity::grpc::proto::{SignUpRequest, UserStatus};
use tonic::Code;
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{STRONG_PASSWORD, TestApp, sign_up_request, spawn_app, token_in};

on_both_databases!(
    builder = spawn_app;
    sign_up_returns_a_pending_user_and_emails_a_verification_link,
    emails_are_canonical_and_unique_whatever_their_case,
    every_invalid_field_is_reported_with_its_reason,
    guessable_passwords_are_refused_with_the_reason,
    passwords_are_checked_exactly_as_sent,
    names_are_trimmed_and_control_characters_refused,
    fifty_concurrent_signups_of_one_address_in_different_cases_create_one_user,
);

async fn sign_up_returns_a_pending_user_and_emails_a_verification_link(mut app: TestApp) {
    let request = SignUpRequest {
        display_name: "  Ada  ".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        ..sign_up_request("ada@example.com")
    };
    let user = app.client.sign_up(request).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.display_name, "Ada");
    assert_eq!(user.last_name, "Lovelace");
    assert_eq!(user.status(), UserStatus::PendingVerification);
    assert!(uuid::Uuid::try_parse(&user.id).is_ok());
    assert!(user.created_at.is_some());
    assert!(user.verified_at.is_none());

    let emails = app.emails.wait_for(1).await;
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to.as_str(), "ada@example.com");
    // Unverified: greeted by the address, not by the names the caller gave.
    assert!(emails[0].text_body.contains("Hello ada,"), "{}", emails[0].text_body);
    assert!(emails[0].html_body.contains("https://app.example/verify?token="));
    assert_eq!(token_in(&emails[0]).len(), 43, "256-bit base64url token");
}

async fn emails_are_canonical_and_unique_whatever_their_case(mut app: TestApp) {
    let user = app.client.sign_up(sign_up_request("  ALICE@EXAMPLE.COM ")).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.email, "alice@example.com");
    let duplicate = app.client.sign_up(sign_up_request("Alice@Example.com")).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    // Email goes to the stored canonical address only.
    let emails = app.emails.wait_for(1).await;
    assert_eq!(emails[0].to.as_str(), "alice@example.com");
    assert_eq!(app.emails.settle().await.len(), 1);
}

async fn every_invalid_field_is_reported_with_its_reason(mut app: TestApp) {
    let request = SignUpRequest {
        email: "alice＠example.com".into(),
        password: "short".into(),
        first_name: "x".repeat(101),
        last_name: "Love\u{0}lace".into(),
        display_name: String::new(),
    };
    let status = app.client.sign_up(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let violations = &details.bad_request().expect("BadRequest details").field_violations;
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["email", "first_name", "last_name", "password"]);
    assert!(violations[0].description.contains('@'));
    assert!(violations[3].description.contains("at least 12"));
    assert!(app.emails.settle().await.is_empty());
}

async fn guessable_passwords_are_refused_with_the_reason(mut app: TestApp) {
    for password in ["password1234", "qwertyuiop123", "ada.lovelace1815"] {
        let request = SignUpRequest { password: password.into(), ..sign_up_request("ada.lovelace@example.com") };
        let status = app.client.sign_up(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{password}");
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "password");
        assert!(violation.description.starts_with("is too easy to guess"), "{}", violation.description);
    }
}

async fn passwords_are_checked_exactly_as_sent(mut app: TestApp) {
    let too_long = SignUpRequest { password: "Zq8#vL2!mXw-".repeat(11), ..sign_up_request("long@example.com") };
    let status = app.client.sign_up(too_long).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at most 128"));

    // Spaces count and are kept: the same string, spaces included, logs in later.
    let spaced = format!("  {STRONG_PASSWORD}  ");
    let request = SignUpRequest { password: spaced.clone(), ..sign_up_request("spaced@example.com") };
    app.client.sign_up(request).await.unwrap();
    let token = token_in(&app.emails.wait_for(1).await[0]);
    app.client.verify_email(identity::grpc::proto::VerifyEmailRequest { token }).await.unwrap();
    let login = |password: String| identity::grpc::proto::LoginRequest {
        email: "spaced@example.com".into(),
        password,
        client: None,
    };
    assert_eq!(app.client.login(login(STRONG_PASSWORD.into())).await.unwrap_err().code(), Code::Unauthenticated);
    app.client.login(login(spaced)).await.unwrap();
}

async fn names_are_trimmed_and_control_characters_refused(mut app: TestApp) {
    let bidi = SignUpRequest { display_name: "evil\u{202E}txt.exe".into(), ..sign_up_request("n@example.com") };
    let status = app.client.sign_up(bidi).await.unwrap_err();
    assert_eq!(status.get_error_details().bad_request().unwrap().field_violations[0].field, "display_name");
    let blank = SignUpRequest { display_name: "   ".into(), ..sign_up_request("n@example.com") };
    let user = app.client.sign_up(blank).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.display_name, "");
}

async fn fifty_concurrent_signups_of_one_address_in_different_cases_create_one_user(app: TestApp) {
    let calls = (0..50).map(|i| {
        let mut client = app.client.clone();
        let email = if i % 2 == 0 { "race@example.com".to_owned() } else { "RACE@Example.COM".to_owned() };
        tokio::spawn(async move { client.sign_up(sign_up_request(&email)).await })
    });
    let mut created = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.emails.wait_for(1).await.len(), 1);
    assert_eq!(app.emails.settle().await.len(), 1, "exactly one verification email");
}
