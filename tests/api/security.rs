//! The security invariants that are not races: targeted lockout, budgets per
//! operation, enumeration through Login, reset links as oracles, session
//! lifetime, access tokens that die with their session.

use std::time::Duration;

use identity::grpc::proto::{
    ChangePasswordRequest, GetCurrentUserRequest, LoginRequest, LogoutRequest, RefreshSessionRequest,
    RequestPasswordResetRequest, ResetPasswordRequest, SignUpRequest, VerifyEmailRequest,
};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, from_address, is_valid, logged_in, login_tokens, spawn_app, spawn_app_with,
    token_in, verified_user, wait_for_email, with_bearer,
};

const NEW_PASSWORD: &str = "velvet harbor lantern ninety";

fn behind_a_proxy(s: &mut identity::config::Settings) {
    s.server.trusted_client_ip_header = Some("x-forwarded-for".into());
}

fn enumeration_safe(s: &mut identity::config::Settings) {
    s.server.signup_enumeration_safe = true;
}

fn per_email_limits(s: &mut identity::config::Settings) {
    s.limits.per_email = 5;
}

fn short_session_lifetime(s: &mut identity::config::Settings) {
    s.tokens.session_max_lifetime = Duration::from_secs(3600);
}

on_both_databases!(builder = spawn_app_with(behind_a_proxy); a_strangers_failures_do_not_lock_the_owner_out_of_their_own_address);
on_both_databases!(builder = spawn_app_with(enumeration_safe); enumeration_safe_login_does_not_tell_a_free_address_from_a_taken_one);
on_both_databases!(builder = spawn_app_with(per_email_limits); reset_requests_naming_a_victim_do_not_spend_the_victims_login_budget);
on_both_databases!(builder = spawn_app_with(short_session_lifetime); sessions_end_at_their_absolute_lifetime_however_often_refreshed);
on_both_databases!(
    builder = spawn_app;
    a_reset_link_survives_only_a_few_refused_passwords,
    changing_the_password_spends_outstanding_reset_links,
    access_tokens_die_with_their_session,
    a_password_change_keeps_the_callers_login_even_after_it_was_refreshed,
);

fn login_from(email: &str, password: &str, address: &str) -> Request<LoginRequest> {
    from_address(address, Request::new(LoginRequest { email: email.into(), password: password.into(), client: None }))
}

async fn a_strangers_failures_do_not_lock_the_owner_out_of_their_own_address(mut app: TestApp) {
    let owner = "owner@example.com";
    verified_user(&mut app, owner).await;
    app.client.login(login_from(owner, STRONG_PASSWORD, "203.0.113.5")).await.unwrap();

    // A stranger spreads 100 wrong guesses over twenty addresses, five each.
    for address in 0..20 {
        for _ in 0..5 {
            let status =
                app.client.login(login_from(owner, "wrong guess", &format!("198.51.100.{address}"))).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
        }
    }
    // The account-wide hard cap now holds strangers off, right password or not.
    let stranger = app.client.login(login_from(owner, STRONG_PASSWORD, "198.51.100.200")).await.unwrap_err();
    assert_eq!(stranger.code(), Code::ResourceExhausted);
    // The owner, from the address they logged in from before, is not locked out.
    app.client.login(login_from(owner, STRONG_PASSWORD, "203.0.113.5")).await.unwrap();
}

async fn enumeration_safe_login_does_not_tell_a_free_address_from_a_taken_one(mut app: TestApp) {
    verified_user(&mut app, "taken@example.com").await;
    let other_password = "quiet meadow copper seventy";
    for email in ["taken@example.com", "free@example.com"] {
        let request = SignUpRequest { email: email.into(), password: other_password.into(), ..Default::default() };
        app.client.sign_up(request).await.unwrap();
    }
    let answers: Vec<_> = futures_util::future::join_all(["taken@example.com", "free@example.com"].map(|email| {
        let mut client = app.client.clone();
        async move {
            let status = client
                .login(LoginRequest { email: email.into(), password: other_password.into(), client: None })
                .await
                .unwrap_err();
            (status.code(), status.message().to_owned())
        }
    }))
    .await;
    assert_eq!(answers[0], answers[1], "Login tells a registered address from a free one");
    assert_eq!(answers[0].0, Code::Unauthenticated);

    // Once the owner of the free address proves it, their password works.
    let link = wait_for_email(&app, "free@example.com", "Confirm your email address").await;
    app.client.verify_email(VerifyEmailRequest { token: token_in(&link) }).await.unwrap();
    login_tokens(&mut app, "free@example.com", other_password).await;
}

async fn reset_requests_naming_a_victim_do_not_spend_the_victims_login_budget(mut app: TestApp) {
    let victim = "victim@example.com";
    verified_user(&mut app, victim).await;
    let requests = (0..8).map(|_| {
        let mut client = app.client.clone();
        async move { client.request_password_reset(RequestPasswordResetRequest { email: victim.into() }).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    assert!(
        answers.iter().any(|a| a.as_ref().is_err_and(|s| s.code() == Code::ResourceExhausted)),
        "the reset budget for the address was spent"
    );
    login_tokens(&mut app, victim, STRONG_PASSWORD).await;
}

async fn sessions_end_at_their_absolute_lifetime_however_often_refreshed(mut app: TestApp) {
    let login_time = app.clock_now();
    let (_, _, mut refresh) = logged_in(&mut app, "ada@example.com").await;
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(10 * 60));
        let pair =
            app.client.refresh_session(RefreshSessionRequest { refresh_token: refresh, client: None }).await.unwrap();
        let pair = pair.into_inner();
        let expires = pair.refresh_token_expires_at.unwrap();
        assert!(expires.seconds <= login_time.unix_timestamp() + 3600 + 1, "a refresh extended the session");
        refresh = pair.refresh_token;
    }
    app.clock.advance(Duration::from_secs(11 * 60));
    let late =
        app.client.refresh_session(RefreshSessionRequest { refresh_token: refresh, client: None }).await.unwrap_err();
    assert_eq!(late.code(), Code::Unauthenticated);
}

async fn a_reset_link_survives_only_a_few_refused_passwords(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    app.client.request_password_reset(RequestPasswordResetRequest { email: "ada@example.com".into() }).await.unwrap();
    let token = token_in(&wait_for_email(&app, "ada@example.com", "Reset your password").await);
    let reset = |password: &str| ResetPasswordRequest { token: token.clone(), new_password: password.into() };
    for _ in 0..5 {
        let refused = app.client.reset_password(reset("password1234")).await.unwrap_err();
        let violations = refused.get_error_details().bad_request().unwrap().field_violations.clone();
        assert_eq!(violations[0].field, "new_password");
    }
    let spent = app.client.reset_password(reset(NEW_PASSWORD)).await.unwrap_err();
    assert_eq!(spent.code(), Code::InvalidArgument);
    assert_eq!(spent.get_error_details().bad_request().unwrap().field_violations[0].field, "token");
    login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
}

async fn changing_the_password_spends_outstanding_reset_links(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, "ada@example.com").await;
    app.client.request_password_reset(RequestPasswordResetRequest { email: "ada@example.com".into() }).await.unwrap();
    let token = token_in(&wait_for_email(&app, "ada@example.com", "Reset your password").await);
    let request = ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: NEW_PASSWORD.into() };
    app.client.change_password(with_bearer(&access, request)).await.unwrap();
    let stale = ResetPasswordRequest { token, new_password: "amber falcon winter ninety two".into() };
    let refused = app.client.reset_password(stale).await.unwrap_err();
    assert_eq!(refused.get_error_details().bad_request().unwrap().field_violations[0].field, "token");
    login_tokens(&mut app, "ada@example.com", NEW_PASSWORD).await;
}

async fn access_tokens_die_with_their_session(mut app: TestApp) {
    let (_, first_access, first_refresh) = logged_in(&mut app, "ada@example.com").await;
    let (second_access, second_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;

    app.client.logout(LogoutRequest { refresh_token: first_refresh }).await.unwrap();
    assert!(!is_valid(&mut app, &first_access).await, "a logged-out session's access token validates");
    let me = app.client.get_current_user(with_bearer(&first_access, GetCurrentUserRequest {})).await;
    assert_eq!(me.unwrap_err().code(), Code::Unauthenticated);
    assert!(is_valid(&mut app, &second_access).await, "another session was ended");

    let rotated = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: second_refresh.clone(), client: None })
        .await
        .unwrap()
        .into_inner();
    assert!(is_valid(&mut app, &rotated.access_token).await);
    // A refresh token replayed after the reuse grace (10 s) ends the family,
    // and every access token of it.
    app.clock.advance(Duration::from_secs(11));
    let replay =
        app.client.refresh_session(RefreshSessionRequest { refresh_token: second_refresh, client: None }).await;
    assert_eq!(replay.unwrap_err().code(), Code::Unauthenticated);
    assert!(!is_valid(&mut app, &rotated.access_token).await);
    assert!(!is_valid(&mut app, &second_access).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_callers_share_one_budget_per_slash_64() {
    let Some(mut app) = spawn_app_with(Backend::Sqlite, |s| {
        behind_a_proxy(s);
        s.limits.per_address = 3;
    })
    .await
    else {
        return;
    };
    let verify_from =
        |address: &str| from_address(address, Request::new(VerifyEmailRequest { token: "not-a-token".into() }));
    for host in 1..=3 {
        let status = app.client.verify_email(verify_from(&format!("2001:db8:0:0::{host}"))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    let rotated = app.client.verify_email(verify_from("2001:db8::ffff:4")).await.unwrap_err();
    assert_eq!(rotated.code(), Code::ResourceExhausted, "a new address in the same /64 got a fresh budget");
    let elsewhere = app.client.verify_email(verify_from("2001:db8:0:1::1")).await.unwrap_err();
    assert_eq!(elsewhere.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_that_takes_a_secret_is_rate_limited() {
    let Some(mut app) = spawn_app_with(Backend::Sqlite, |s| {
        behind_a_proxy(s);
        s.limits.per_address = 2;
        s.limits.refresh_per_address = 2;
    })
    .await
    else {
        return;
    };
    let (_, access, _) = logged_in(&mut app, "ada@example.com").await;
    // From an address of its own, so that the set-up above spent nothing of it.
    fn from<T>(request: Request<T>) -> Request<T> {
        from_address("198.51.100.77", request)
    }
    let mut client = app.client.clone();
    for call in 0..3 {
        let wrong_current =
            ChangePasswordRequest { current_password: "wrong one".into(), new_password: NEW_PASSWORD.into() };
        let codes = [
            client.verify_email(from(Request::new(VerifyEmailRequest { token: "x".into() }))).await.unwrap_err().code(),
            client
                .reset_password(from(Request::new(ResetPasswordRequest {
                    token: "x".into(),
                    new_password: NEW_PASSWORD.into(),
                })))
                .await
                .unwrap_err()
                .code(),
            client
                .refresh_session(from(Request::new(RefreshSessionRequest { refresh_token: "x".into(), client: None })))
                .await
                .unwrap_err()
                .code(),
            client.logout(from(Request::new(LogoutRequest { refresh_token: "x".into() }))).await.unwrap_err().code(),
            client.change_password(from(with_bearer(&access, wrong_current))).await.unwrap_err().code(),
        ];
        for code in codes {
            if call < 2 {
                assert_ne!(code, Code::ResourceExhausted, "call {call}");
            } else {
                assert_eq!(code, Code::ResourceExhausted, "call {call}");
            }
        }
    }
}

async fn a_password_change_keeps_the_callers_login_even_after_it_was_refreshed(mut app: TestApp) {
    let (_, access, refresh) = logged_in(&mut app, "ada@example.com").await;
    let (other_access, _) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    let rotated = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: refresh, client: None })
        .await
        .unwrap()
        .into_inner();
    // The access token from before the refresh still names the older session.
    let request = ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: NEW_PASSWORD.into() };
    app.client.change_password(with_bearer(&access, request)).await.unwrap();
    assert!(is_valid(&mut app, &rotated.access_token).await, "the caller's login ended");
    app.client
        .refresh_session(RefreshSessionRequest { refresh_token: rotated.refresh_token, client: None })
        .await
        .expect("the caller's login refreshes");
    assert!(!is_valid(&mut app, &other_access).await, "another login survived the change");
}
