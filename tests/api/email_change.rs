use std::time::Duration;

use identity::grpc::proto::{
    ConfirmEmailChangeRequest, LoginRequest, RefreshSessionRequest, RequestEmailChangeRequest, SetUserEmailRequest,
    UserStatus, admin_service_client::AdminServiceClient,
};
use sha2::{Digest, Sha256};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, emails_to, is_valid, logged_in, login_tokens, spawn_app_with, token_in,
    wait_for_email, with_bearer,
};

on_both_databases!(
    builder = email_change_app;
    an_email_change_moves_the_account_once_confirmed_and_ends_the_other_sessions,
    a_taken_address_answers_the_same_and_tells_its_owner_instead,
    confirmation_links_expire_and_the_password_and_address_are_checked,
    concurrent_confirmations_of_two_accounts_to_one_address_have_exactly_one_winner,
    support_sets_an_address_verified_or_to_be_verified,
);
on_both_databases!(builder = quiet_app; email_change_notices_are_not_sent_when_switched_off);

const ADMIN_KEY: &str = "test-admin-key-0123456789";
const CONFIRM_SUBJECT: &str = "Confirm your new email address";
const PENDING_SUBJECT: &str = "Your email address is being changed";
const CHANGED_SUBJECT: &str = "Your email address was changed";
const ATTEMPTED_SUBJECT: &str = "Someone tried to use your email address";

async fn email_change_app(backend: Backend) -> Option<TestApp> {
    let hash: String = hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()));
    spawn_app_with(backend, move |s| s.server.admin_api_key_hashes = vec![hash]).await
}

async fn quiet_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| s.notices.email_changed = false).await
}

fn change_to(new_email: &str, password: &str) -> RequestEmailChangeRequest {
    RequestEmailChangeRequest { new_email: new_email.into(), current_password: password.into() }
}

fn violation_field(status: &tonic::Status) -> String {
    status.get_error_details().bad_request().expect("BadRequest details").field_violations[0].field.clone()
}

async fn confirm(app: &mut TestApp, token: &str) -> Result<identity::grpc::proto::User, tonic::Status> {
    app.client
        .confirm_email_change(ConfirmEmailChangeRequest { token: token.into() })
        .await
        .map(|response| response.into_inner().user.unwrap())
}

async fn login_fails(app: &mut TestApp, email: &str) -> bool {
    let request = LoginRequest { email: email.into(), password: STRONG_PASSWORD.into(), ..Default::default() };
    app.client.login(request).await.is_err()
}

async fn an_email_change_moves_the_account_once_confirmed_and_ends_the_other_sessions(mut app: TestApp) {
    let (user_id, access, own_refresh) = logged_in(&mut app, "ada@example.com").await;
    let (other_access, other_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;

    app.client
        .request_email_change(with_bearer(&access, change_to("Grace@Example.com", STRONG_PASSWORD)))
        .await
        .unwrap();
    let link = wait_for_email(&app, "grace@example.com", CONFIRM_SUBJECT).await;
    assert!(link.text_body.contains("http://localhost:3000/confirm-email-change?token="), "{}", link.text_body);
    wait_for_email(&app, "ada@example.com", PENDING_SUBJECT).await;
    // Until the link is used, the account keeps its address.
    login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;

    let token = token_in(&link);
    let user = confirm(&mut app, &token).await.unwrap();
    assert_eq!((user.id.as_str(), user.email.as_str()), (user_id.as_str(), "grace@example.com"));
    assert_eq!(user.status(), UserStatus::Active);
    assert!(login_fails(&mut app, "ada@example.com").await);
    login_tokens(&mut app, "grace@example.com", STRONG_PASSWORD).await;
    // The login that asked goes on; the other one is over.
    assert!(is_valid(&mut app, &access).await);
    assert!(!is_valid(&mut app, &other_access).await);
    app.client
        .refresh_session(RefreshSessionRequest { refresh_token: own_refresh, ..Default::default() })
        .await
        .unwrap();
    let other = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: other_refresh, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::Unauthenticated);
    wait_for_email(&app, "ada@example.com", CHANGED_SUBJECT).await;

    // The link works once.
    let reused = confirm(&mut app, &token).await.unwrap_err();
    assert_eq!((reused.code(), violation_field(&reused)), (Code::InvalidArgument, "token".to_owned()));
    let sent = app.emails.settle().await;
    for subject in [CONFIRM_SUBJECT, PENDING_SUBJECT, CHANGED_SUBJECT] {
        assert_eq!(sent.iter().filter(|e| e.subject == subject).count(), 1, "{subject} sent once");
    }
}

async fn a_taken_address_answers_the_same_and_tells_its_owner_instead(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, "ada@example.com").await;
    logged_in(&mut app, "grace@example.com").await;
    app.client
        .request_email_change(with_bearer(&access, change_to("grace@example.com", STRONG_PASSWORD)))
        .await
        .unwrap();
    let notice = wait_for_email(&app, "grace@example.com", ATTEMPTED_SUBJECT).await;
    assert!(!notice.text_body.contains("token="), "{}", notice.text_body);
    // The asker's old address hears the same as for a free one.
    wait_for_email(&app, "ada@example.com", PENDING_SUBJECT).await;
    app.emails.settle().await;
    assert!(emails_to(&app, "grace@example.com", CONFIRM_SUBJECT).is_empty());
}

async fn confirmation_links_expire_and_the_password_and_address_are_checked(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, "ada@example.com").await;
    let wrong = app
        .client
        .request_email_change(with_bearer(&access, change_to("grace@example.com", "not-my-password")))
        .await
        .unwrap_err();
    assert_eq!((wrong.code(), violation_field(&wrong)), (Code::InvalidArgument, "current_password".to_owned()));
    let same = app
        .client
        .request_email_change(with_bearer(&access, change_to("ADA@example.com", STRONG_PASSWORD)))
        .await
        .unwrap_err();
    assert_eq!((same.code(), violation_field(&same)), (Code::InvalidArgument, "new_email".to_owned()));
    let bad = app.client.request_email_change(with_bearer(&access, change_to("not-an-email", ""))).await.unwrap_err();
    let details = bad.get_error_details();
    let fields: Vec<_> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["new_email", "current_password"]);
    let anonymous =
        app.client.request_email_change(Request::new(change_to("grace@example.com", STRONG_PASSWORD))).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);

    app.client
        .request_email_change(with_bearer(&access, change_to("grace@example.com", STRONG_PASSWORD)))
        .await
        .unwrap();
    let token = token_in(&wait_for_email(&app, "grace@example.com", CONFIRM_SUBJECT).await);
    app.clock.advance(Duration::from_secs(3601));
    let expired = confirm(&mut app, &token).await.unwrap_err();
    assert_eq!((expired.code(), violation_field(&expired)), (Code::InvalidArgument, "token".to_owned()));
    let garbage = confirm(&mut app, "not a token").await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);
    login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
}

async fn concurrent_confirmations_of_two_accounts_to_one_address_have_exactly_one_winner(mut app: TestApp) {
    let (_, ada, _) = logged_in(&mut app, "ada@example.com").await;
    let (_, bob, _) = logged_in(&mut app, "bob@example.com").await;
    for access in [&ada, &bob] {
        app.client
            .request_email_change(with_bearer(access, change_to("carol@example.com", STRONG_PASSWORD)))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tokens: Vec<String> = Vec::new();
    while tokens.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "two confirmation links to carol");
        tokens = emails_to(&app, "carol@example.com", CONFIRM_SUBJECT).iter().map(token_in).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let confirmations: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let mut client = app.client.clone();
            tokio::spawn(async move { client.confirm_email_change(ConfirmEmailChangeRequest { token }).await })
        })
        .collect();
    let mut codes = Vec::new();
    for confirmation in confirmations {
        codes.push(confirmation.await.unwrap().map_or_else(|status| status.code(), |_| Code::Ok));
    }
    codes.sort_by_key(|code| *code as i32);
    assert_eq!(codes, [Code::Ok, Code::AlreadyExists]);
    let winners = ["ada@example.com", "bob@example.com"];
    let mut still_there = 0;
    for email in winners {
        if !login_fails(&mut app, email).await {
            still_there += 1;
        }
    }
    assert_eq!(still_there, 1, "the loser keeps its address");
    login_tokens(&mut app, "carol@example.com", STRONG_PASSWORD).await;
}

fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", ADMIN_KEY.parse().unwrap());
    request
}

async fn support_sets_an_address_verified_or_to_be_verified(mut app: TestApp) {
    let (user_id, access, _) = logged_in(&mut app, "ada@example.com").await;
    logged_in(&mut app, "bob@example.com").await;
    let mut admin = AdminServiceClient::new(app.channel().await);
    let set = |email: &str, verified: bool| {
        keyed(SetUserEmailRequest { user_id: user_id.clone(), email: email.into(), verified })
    };

    let user = admin.set_user_email(set("Grace@example.com", true)).await.unwrap().into_inner().user.unwrap();
    assert_eq!((user.email.as_str(), user.status()), ("grace@example.com", UserStatus::Active));
    assert!(!is_valid(&mut app, &access).await, "every session ends");
    login_tokens(&mut app, "grace@example.com", STRONG_PASSWORD).await;
    wait_for_email(&app, "ada@example.com", CHANGED_SUBJECT).await;

    let user = admin.set_user_email(set("hopper@example.com", false)).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.status(), UserStatus::PendingVerification);
    let verification = wait_for_email(&app, "hopper@example.com", "Confirm your email address").await;
    app.client
        .verify_email(identity::grpc::proto::VerifyEmailRequest { token: token_in(&verification) })
        .await
        .unwrap();
    login_tokens(&mut app, "hopper@example.com", STRONG_PASSWORD).await;

    let taken = admin.set_user_email(set("bob@example.com", true)).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let unknown = SetUserEmailRequest {
        user_id: uuid::Uuid::now_v7().to_string(),
        email: "zed@example.com".into(),
        verified: true,
    };
    assert_eq!(admin.set_user_email(keyed(unknown)).await.unwrap_err().code(), Code::NotFound);
    let bad = SetUserEmailRequest { user_id: "nope".into(), email: "nope".into(), verified: true };
    let status = admin.set_user_email(keyed(bad)).await.unwrap_err();
    assert_eq!(status.get_error_details().bad_request().unwrap().field_violations.len(), 2);
}

async fn email_change_notices_are_not_sent_when_switched_off(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, "ada@example.com").await;
    app.client
        .request_email_change(with_bearer(&access, change_to("grace@example.com", STRONG_PASSWORD)))
        .await
        .unwrap();
    let token = token_in(&wait_for_email(&app, "grace@example.com", CONFIRM_SUBJECT).await);
    confirm(&mut app, &token).await.unwrap();
    let sent = app.emails.settle().await;
    assert!(
        sent.iter().all(|e| e.subject != PENDING_SUBJECT && e.subject != CHANGED_SUBJECT),
        "{:?}",
        sent.iter().map(|e| &e.subject).collect::<Vec<_>>()
    );
}
