//! Account state under concurrency: real parallel calls at the real server, on
//! both databases, repeated so that a losing interleaving shows up. Hashing is
//! given a realistic cost here, so that the window a read-hash-write leaves
//! open is as wide as in production.

use std::{sync::Arc, time::Duration};

use identity::grpc::proto::{
    ChangePasswordRequest, ConfirmEmailChangeRequest, DisableUserRequest, GetUserRequest, ListSessionsRequest,
    LoginRequest, LogoutAllRequest, LogoutRequest, RefreshSessionRequest, RequestEmailChangeRequest,
    RequestPasswordResetRequest, ResetPasswordRequest, RevokeSessionRequest, SetUserEmailRequest, UserStatus,
    admin_service_client::AdminServiceClient, user_service_client::UserServiceClient,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tonic::{Code, Request, transport::Channel};

use testkit::on_both_databases;

use crate::helpers::{
    Backend, STRONG_PASSWORD, TestApp, emails_to, is_valid, logged_in, login_tokens, spawn_app_with, token_in,
    wait_for_email, with_bearer,
};

const ADMIN_KEY: &str = "race-admin-key-0123456789";
const NEW_PASSWORD: &str = "velvet harbor lantern ninety";
const TRIALS: usize = 6;

on_both_databases!(
    builder = race_app;
    a_password_change_racing_a_disable_never_undoes_the_disable,
    a_thief_refreshing_in_a_loop_does_not_survive_log_out_everywhere,
    a_thief_refreshing_in_a_loop_does_not_survive_a_password_reset,
    a_thief_refreshing_in_a_loop_does_not_survive_a_password_change,
    a_thief_refreshing_in_a_loop_does_not_survive_a_disable,
    a_thief_refreshing_in_a_loop_does_not_survive_the_owner_revoking_its_session,
    two_password_changes_proving_one_password_change_it_once,
    verifying_while_a_resend_runs_never_fails_inside,
    concurrent_resets_with_one_link_succeed_once_within_its_attempts,
    address_changes_racing_each_other_tell_every_address_left_once,
    first_logins_upgrading_a_django_hash_never_undo_a_password_change_beside_them,
);

on_both_databases!(builder = storm_app; concurrent_wrong_guesses_get_no_more_checks_than_the_free_attempts);
on_both_databases!(builder = enumeration_safe_app; concurrent_sign_ups_with_a_taken_address_notify_its_owner_once);

async fn enumeration_safe_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| s.server.signup_enumeration_safe = true).await
}

/// Hashes slow enough that every guess of a burst is read in before the first
/// failure could be written: a check-then-act throttle lets them all through.
async fn storm_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| {
        s.passwords.argon2.m_cost = 32_768;
        s.passwords.argon2.t_cost = 3;
        s.passwords.argon2.max_concurrent = 24;
    })
    .await
}

async fn race_app(backend: Backend) -> Option<TestApp> {
    let hash: String = hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()));
    spawn_app_with(backend, move |s| {
        s.server.admin_api_key_hashes = vec![hash];
        // A few milliseconds per hash, many at once: the windows the races need
        // (with one hash at a time, concurrent logins would queue one behind the
        // other and never overlap).
        s.passwords.argon2.m_cost = 4096;
        s.passwords.argon2.t_cost = 2;
        s.passwords.argon2.max_concurrent = 24;
    })
    .await
}

fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", ADMIN_KEY.parse().unwrap());
    request
}

async fn admin(app: &TestApp) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(app.channel().await)
}

fn change(access: &str) -> Request<ChangePasswordRequest> {
    with_bearer(
        access,
        ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: NEW_PASSWORD.into() },
    )
}

async fn a_password_change_racing_a_disable_never_undoes_the_disable(mut app: TestApp) {
    let mut admin = admin(&app).await;
    for trial in 0..TRIALS {
        let email = format!("race{trial}@example.com");
        let (user_id, access, _) = logged_in(&mut app, &email).await;
        let mut client = app.client.clone();
        let request = change(&access);
        let changing = tokio::spawn(async move { client.change_password(request).await });
        // Land the disable at a different point of the change's hashing each time.
        tokio::time::sleep(Duration::from_millis(trial as u64 * 2)).await;
        let disabled = admin.disable_user(keyed(DisableUserRequest { user_id: user_id.clone() })).await.unwrap();
        assert_eq!(disabled.into_inner().user.unwrap().status(), UserStatus::Disabled);
        let _ = changing.await.unwrap();

        let user = admin
            .get_user(keyed(GetUserRequest { user_id, ..Default::default() }))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        assert_eq!(user.status(), UserStatus::Disabled, "trial {trial}: the disable was undone");
        assert!(!is_valid(&mut app, &access).await, "trial {trial}: a token from before the disable validates");
        for password in [STRONG_PASSWORD, NEW_PASSWORD] {
            let login =
                app.client.login(LoginRequest { email: email.clone(), password: password.into(), client: None }).await;
            assert!(login.is_err(), "trial {trial}: a disabled user logged in");
        }
    }
}

/// What a thief holding a refresh token got by refreshing as fast as it could
/// until refused.
struct Loot {
    access_tokens: Vec<String>,
    last_refresh_token: String,
    survived: bool,
}

async fn refresh_until_refused(
    mut client: UserServiceClient<Channel>,
    mut refresh_token: String,
    started: Arc<Notify>,
) -> Loot {
    let mut access_tokens = Vec::new();
    for _ in 0..2_000 {
        match client.refresh_session(RefreshSessionRequest { refresh_token: refresh_token.clone(), client: None }).await
        {
            Ok(response) => {
                let pair = response.into_inner();
                access_tokens.push(pair.access_token);
                refresh_token = pair.refresh_token;
                started.notify_one();
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                return Loot { access_tokens, last_refresh_token: refresh_token, survived: false };
            }
        }
    }
    Loot { access_tokens, last_refresh_token: refresh_token, survived: true }
}

/// Starts a thief on a second session of `email`, lets it refresh for a
/// while, runs `revoke` beside it, and checks that nothing the thief holds
/// works once `revoke` returned.
async fn thief_does_not_survive<F, Fut>(app: &mut TestApp, email: &str, trial: usize, revoke: F)
where
    F: FnOnce(UserServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (_, thief_refresh) = login_tokens(app, email, STRONG_PASSWORD).await;
    let started = Arc::new(Notify::new());
    let thief = tokio::spawn(refresh_until_refused(app.client.clone(), thief_refresh, Arc::clone(&started)));
    // Once the thief is refreshing, land the revocation a little later each trial.
    started.notified().await;
    tokio::time::sleep(Duration::from_millis(trial as u64 * 2)).await;
    revoke(app.client.clone()).await;
    let loot = thief.await.unwrap();
    assert!(!loot.survived, "trial {trial}: the thief kept refreshing after the revocation");
    let replay = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: loot.last_refresh_token, client: None })
        .await;
    assert_eq!(replay.unwrap_err().code(), Code::Unauthenticated, "trial {trial}");
    for token in &loot.access_tokens {
        assert!(!is_valid(app, token).await, "trial {trial}: an access token the thief got still validates");
    }
}

async fn a_thief_refreshing_in_a_loop_does_not_survive_log_out_everywhere(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("thief{trial}@example.com");
        let (_, access, _) = logged_in(&mut app, &email).await;
        let owner_access = access.clone();
        thief_does_not_survive(&mut app, &email, trial, |mut client| async move {
            client.logout_all(with_bearer(&owner_access, LogoutAllRequest {})).await.unwrap();
        })
        .await;
        assert!(!is_valid(&mut app, &access).await);
    }
}

async fn a_thief_refreshing_in_a_loop_does_not_survive_a_password_reset(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("reset{trial}@example.com");
        let (_, access, _) = logged_in(&mut app, &email).await;
        app.client.request_password_reset(RequestPasswordResetRequest { email: email.clone() }).await.unwrap();
        let token = token_in(&wait_for_email(&app, &email, "Reset your password").await);
        thief_does_not_survive(&mut app, &email, trial, |mut client| async move {
            let request = ResetPasswordRequest { token, new_password: NEW_PASSWORD.into() };
            client.reset_password(request).await.unwrap();
        })
        .await;
        assert!(!is_valid(&mut app, &access).await);
    }
}

async fn a_thief_refreshing_in_a_loop_does_not_survive_a_password_change(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("change{trial}@example.com");
        let (_, access, refresh) = logged_in(&mut app, &email).await;
        let owner_access = access.clone();
        thief_does_not_survive(&mut app, &email, trial, |mut client| async move {
            client.change_password(change(&owner_access)).await.unwrap();
        })
        .await;
        // The owner's own session goes on.
        assert!(is_valid(&mut app, &access).await, "trial {trial}: the caller's own session ended");
        app.client.logout(LogoutRequest { refresh_token: refresh }).await.unwrap();
    }
}

async fn a_thief_refreshing_in_a_loop_does_not_survive_a_disable(mut app: TestApp) {
    let admin = admin(&app).await;
    for trial in 0..TRIALS {
        let email = format!("disable{trial}@example.com");
        let (user_id, _, _) = logged_in(&mut app, &email).await;
        let mut admin = admin.clone();
        thief_does_not_survive(&mut app, &email, trial, |_| async move {
            admin.disable_user(keyed(DisableUserRequest { user_id })).await.unwrap();
        })
        .await;
    }
}

async fn a_thief_refreshing_in_a_loop_does_not_survive_the_owner_revoking_its_session(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("revoke{trial}@example.com");
        let (_, access, _) = logged_in(&mut app, &email).await;
        let owner_access = access.clone();
        thief_does_not_survive(&mut app, &email, trial, |mut client| async move {
            let listed = client.list_sessions(with_bearer(&owner_access, ListSessionsRequest {})).await.unwrap();
            for session in listed.into_inner().sessions.into_iter().filter(|session| !session.current) {
                let request = with_bearer(&owner_access, RevokeSessionRequest { session_id: session.id });
                client.revoke_session(request).await.unwrap();
            }
        })
        .await;
        // The owner's own session goes on.
        assert!(is_valid(&mut app, &access).await, "trial {trial}: the caller's own session ended");
    }
}

async fn concurrent_wrong_guesses_get_no_more_checks_than_the_free_attempts(mut app: TestApp) {
    crate::helpers::verified_user(&mut app, "guessed@example.com").await;
    // A connection per guess, as twenty attackers would open.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(UserServiceClient::new(app.channel().await));
    }
    let guesses = clients.into_iter().enumerate().map(|(i, mut client)| {
        tokio::spawn(async move {
            let request = LoginRequest {
                email: "guessed@example.com".into(),
                password: format!("wrong guess {i}"),
                client: None,
            };
            client.login(request).await.unwrap_err().code()
        })
    });
    let mut checked = 0;
    let mut throttled = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            Code::Unauthenticated => checked += 1,
            Code::ResourceExhausted => throttled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Five free attempts (IDENTITY_LOGIN_THROTTLE_AFTER); the test clock stands
    // still, so the lock after the fifth never lapses during the test.
    assert_eq!(checked, 5, "passwords checked");
    assert_eq!(throttled, 15);
}

async fn two_password_changes_proving_one_password_change_it_once(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("twice{trial}@example.com");
        let (_, access, _) = logged_in(&mut app, &email).await;
        let changes = ["amber falcon winter ninety two", "copper meadow quiet seventy one"].map(|new_password| {
            let mut client = app.client.clone();
            let request = with_bearer(
                &access,
                ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: new_password.into() },
            );
            tokio::spawn(async move { client.change_password(request).await })
        });
        let mut changed = 0;
        for change in changes {
            match change.await.unwrap() {
                Ok(_) => changed += 1,
                Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "trial {trial}: {status:?}"),
            }
        }
        // The second proved a password that was no longer the current one.
        assert_eq!(changed, 1, "trial {trial}");
    }
}

async fn verifying_while_a_resend_runs_never_fails_inside(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("verify{trial}@example.com");
        app.client.sign_up(crate::helpers::sign_up_request(&email)).await.unwrap();
        let token = token_in(&wait_for_email(&app, &email, "Confirm your email address").await);
        let mut verifier = app.client.clone();
        let verifying =
            tokio::spawn(
                async move { verifier.verify_email(identity::grpc::proto::VerifyEmailRequest { token }).await },
            );
        let resend = identity::grpc::proto::ResendVerificationEmailRequest { email: email.clone() };
        let resent = app.client.resend_verification_email(resend).await;
        assert!(resent.is_ok(), "trial {trial}: {resent:?}");
        // Either the link was used first, or the resend spent it first: never a
        // failure inside (a deadlock is INTERNAL).
        if let Err(status) = verifying.await.unwrap() {
            assert_eq!(status.code(), Code::InvalidArgument, "trial {trial}: {status:?}");
        }
    }
}

async fn concurrent_resets_with_one_link_succeed_once_within_its_attempts(mut app: TestApp) {
    for trial in 0..TRIALS {
        let email = format!("relink{trial}@example.com");
        crate::helpers::verified_user(&mut app, &email).await;
        app.client.request_password_reset(RequestPasswordResetRequest { email: email.clone() }).await.unwrap();
        let token = token_in(&wait_for_email(&app, &email, "Reset your password").await);
        // Eight refused passwords and four acceptable ones, all at once.
        let attempts = (0..12).map(|i| {
            let mut client = app.client.clone();
            let new_password =
                if i % 3 == 0 { format!("amber falcon winter {i} ninety") } else { "password1234".into() };
            let request = ResetPasswordRequest { token: token.clone(), new_password };
            tokio::spawn(async move { client.reset_password(request).await.map(|_| ()) })
        });
        let (mut succeeded, mut weak, mut spent) = (0, 0, 0);
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => succeeded += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::InvalidArgument, "trial {trial}: {status:?}");
                    let details = tonic_types::StatusExt::get_error_details(&status);
                    match details.bad_request().unwrap().field_violations[0].field.as_str() {
                        "new_password" => weak += 1,
                        _ => spent += 1,
                    }
                }
            }
        }
        assert!(succeeded <= 1, "trial {trial}: one link reset the password {succeeded} times");
        assert!(succeeded + weak <= 5, "trial {trial}: {} attempts got past the budget of 5", succeeded + weak);
        assert_eq!(succeeded + weak + spent, 12, "trial {trial}");
    }
}

async fn concurrent_sign_ups_with_a_taken_address_notify_its_owner_once(mut app: TestApp) {
    let owner = "owner@example.com";
    crate::helpers::verified_user(&mut app, owner).await;
    let sign_ups = (0..10).map(|_| {
        let mut client = app.client.clone();
        tokio::spawn(async move { client.sign_up(crate::helpers::sign_up_request(owner)).await })
    });
    for sign_up in sign_ups {
        sign_up.await.unwrap().expect("a taken address answers like a free one");
    }
    wait_for_email(&app, owner, "Someone tried to sign up with your email address").await;
    app.emails.settle().await;
    let notices = crate::helpers::emails_to(&app, owner, "Someone tried to sign up with your email address");
    assert_eq!(notices.len(), 1, "the cooldown let {} notices through", notices.len());
}

/// The user confirms a new address while operators move the account to
/// others, all at once. However they interleave, every address the account
/// held and left is told once, and the one it ends at is not: a change built
/// from a read taken before another committed would tell an address twice
/// and the one in between never.
async fn address_changes_racing_each_other_tell_every_address_left_once(mut app: TestApp) {
    const CHANGED: &str = "Your email address was changed";
    const OPERATORS: usize = 3;
    for trial in 0..TRIALS {
        let first = format!("first-{trial}@example.com");
        let (user_id, access, _) = logged_in(&mut app, &first).await;
        let confirmed = format!("confirmed-{trial}@example.com");
        let request =
            RequestEmailChangeRequest { new_email: confirmed.clone(), current_password: STRONG_PASSWORD.into() };
        app.client.request_email_change(with_bearer(&access, request)).await.unwrap();
        let token = token_in(&wait_for_email(&app, &confirmed, "Confirm your new email address").await);
        let mut user = app.client.clone();
        let confirm = tokio::spawn(async move { user.confirm_email_change(ConfirmEmailChangeRequest { token }).await });
        let mut changes = Vec::new();
        for i in 0..OPERATORS {
            let (mut operator, user_id) = (admin(&app).await, user_id.clone());
            let address = format!("operator-{trial}-{i}@example.com");
            let set = SetUserEmailRequest { user_id, email: address.clone(), verified: true };
            changes.push((address, tokio::spawn(async move { operator.set_user_email(keyed(set)).await })));
        }
        let mut held = vec![first.clone()];
        if confirm.await.unwrap().is_ok() {
            held.push(confirmed.clone());
        }
        for (address, change) in changes {
            match change.await.unwrap() {
                Ok(_) => held.push(address),
                // Documented: the account kept changing under the call.
                Err(status) => assert_eq!(status.code(), Code::Aborted, "trial {trial}: {status:?}"),
            }
        }
        let final_email = admin(&app)
            .await
            .get_user(keyed(GetUserRequest { user_id, ..Default::default() }))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .email;
        assert!(held.contains(&final_email), "trial {trial}: ends at {final_email}, held {held:?}");
        for address in held.iter().filter(|a| **a != final_email) {
            wait_for_email(&app, address, CHANGED).await;
        }
        app.emails.settle().await;
        for address in &held {
            let told = emails_to(&app, address, CHANGED).len();
            let expected = usize::from(*address != final_email);
            assert_eq!(
                told, expected,
                "trial {trial}: {address} told {told} times; held {held:?}, ends at {final_email}"
            );
        }
    }
}

/// An imported user's first logins each want to replace the Django hash with
/// argon2id, while the user changes the password: whatever the order, the new
/// password is the one that works afterwards, and the old one never again.
async fn first_logins_upgrading_a_django_hash_never_undo_a_password_change_beside_them(mut app: TestApp) {
    let db = sea_orm::Database::connect(app.database.url().as_str()).await.unwrap();
    for trial in 0..TRIALS {
        let email = format!("imported{trial}@example.com");
        let (_, access, _) = logged_in(&mut app, &email).await;
        // As `import-django` leaves it: the Django hash of the same password.
        let django = crate::django_passwords::pbkdf2("pbkdf2_sha256", STRONG_PASSWORD, &format!("salt{trial}"));
        crate::django_passwords::set_hash(&db, &email, &django).await;

        let logins: Vec<_> = (0..4)
            .map(|_| {
                let mut client = app.client.clone();
                let request = LoginRequest { email: email.clone(), password: STRONG_PASSWORD.into(), client: None };
                tokio::spawn(async move { client.login(request).await })
            })
            .collect();
        // Land the change at a different point of the logins' hashing each time.
        tokio::time::sleep(Duration::from_millis(trial as u64 * 3)).await;
        app.client.change_password(change(&access)).await.unwrap_or_else(|e| panic!("trial {trial}: {e:?}"));
        for login in logins {
            if let Err(status) = login.await.unwrap() {
                // Only a login that lost to the change may fail, and only as a wrong password.
                assert_eq!(status.code(), Code::Unauthenticated, "trial {trial}: {status:?}");
            }
        }

        let stored = crate::django_passwords::stored_hash(&db, &email).await;
        assert!(stored.starts_with("$argon2id$"), "trial {trial}: {stored}");
        login_tokens(&mut app, &email, NEW_PASSWORD).await;
        let old =
            app.client.login(LoginRequest { email: email.clone(), password: STRONG_PASSWORD.into(), client: None });
        assert_eq!(old.await.unwrap_err().code(), Code::Unauthenticated, "trial {trial}: the old password came back");
    }
}
