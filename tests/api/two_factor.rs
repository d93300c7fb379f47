//! Two-factor login through the real server: enrolment, logins with a TOTP
//! code and with recovery codes, replays, wrong codes, concurrency, turning it
//! off, new recovery codes, and start-up without the key.

use std::time::Duration;

use identity::{
    config::Settings,
    grpc::proto::{
        BeginTotpEnrollmentRequest, CompleteMfaLoginRequest, ConfirmTotpEnrollmentRequest, DisableTotpRequest,
        LoginRequest, LoginResponse, RefreshSessionRequest, RegenerateRecoveryCodesRequest, ResetMfaRequest,
        ValidateTokenRequest, ValidateTokenResponse,
    },
    startup::{Application, Overrides},
};
use testkit::on_both_databases;
use time::OffsetDateTime;
use tonic::Code;
use tonic_types::StatusExt;
use totp_rs::{Algorithm, Builder, Secret};

use crate::admin::{admin, admin_app, keyed};
use crate::helpers::{
    STRONG_PASSWORD, TestApp, logged_in, spawn_app, spawn_app_with, spawn_replica, test_settings, with_bearer,
};

on_both_databases!(
    builder = spawn_app;
    enrolment_makes_login_ask_for_a_code_and_the_tokens_say_so,
    a_totp_code_is_accepted_once_and_the_neighbouring_steps_are_allowed,
    a_recovery_code_completes_a_login_once,
    a_wrong_password_answers_as_without_two_factor_login,
    wrong_codes_count_toward_the_login_lock_out,
    new_recovery_codes_replace_the_old_ones,
    turning_two_factor_login_off_needs_the_password_and_a_code_and_sends_a_notice,
    a_second_enrolment_replaces_the_pending_secret,
    a_two_factor_login_records_a_session_created_event_that_says_so,
    an_expired_challenge_is_refused_and_pruned,
    an_enrolment_never_confirmed_is_pruned_and_a_confirmed_one_stays,
    a_login_that_stops_at_the_second_factor_upgrades_a_weak_hash,
);

on_both_databases!(
    builder = spawn_app_with(without_throttling);
    five_codes_spend_the_challenge,
    concurrent_completions_of_one_challenge_let_exactly_one_win,
    turning_it_off_beside_a_login_with_the_same_recovery_code_lets_exactly_one_use_it,
);

on_both_databases!(
    builder = spawn_app_with(with_racing_hashes);
    password_steps_upgrading_a_django_hash_never_undo_a_password_change_beside_them,
);

on_both_databases!(
    builder = spawn_app_with(without_the_key);
    without_the_key_nobody_can_enrol,
);

on_both_databases!(
    builder = admin_app;
    support_can_reset_a_users_second_factor_and_the_user_is_told,
);

on_both_databases!(start_up_refuses_to_run_without_the_key_once_someone_enrolled);

const EMAIL: &str = "ada@example.com";

/// For tests that fail more codes than the five in a row allowed before
/// throttling (concurrent failures may also land after a success cleared the
/// count, so they can add up beyond what a sequence would).
fn without_throttling(settings: &mut Settings) {
    settings.limits.login_throttle_after = 100;
}

/// Hashing slow enough, and wide enough, for concurrent calls to overlap; a
/// password step counts as a failure until its code, so no throttling either.
fn with_racing_hashes(settings: &mut Settings) {
    without_throttling(settings);
    settings.passwords.argon2.m_cost = 4096;
    settings.passwords.argon2.t_cost = 2;
    settings.passwords.argon2.max_concurrent = 24;
}

fn without_the_key(settings: &mut Settings) {
    settings.mfa.encryption_key = None;
}

/// The code an authenticator app shows for `secret` (base32) at `at`.
fn code_at(secret: &str, at: OffsetDateTime) -> String {
    let bytes = Secret::try_from_base32(secret).expect("the secret is base32");
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(bytes)
        .build()
        .unwrap();
    totp.generate(u64::try_from(at.unix_timestamp()).unwrap()).to_string()
}

/// The app's code now, on the server's clock.
fn current_code(app: &TestApp, secret: &str) -> String {
    code_at(secret, app.clock_now())
}

/// Moves the server's clock to the next 30-second step, so that a new code
/// exists (the current step's was accepted already).
fn next_step(app: &TestApp) {
    app.clock.advance(Duration::from_secs(30));
}

struct Enrolled {
    access: String,
    secret: String,
    recovery_codes: Vec<String>,
}

/// A verified, logged-in user with TOTP confirmed.
async fn enrolled(app: &mut TestApp) -> Enrolled {
    enrolled_as(app, EMAIL).await
}

async fn enrolled_as(app: &mut TestApp, email: &str) -> Enrolled {
    let (_, access, _) = logged_in(app, email).await;
    let request = BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
    let begun = app.client.begin_totp_enrollment(with_bearer(&access, request)).await.unwrap().into_inner();
    let confirm = ConfirmTotpEnrollmentRequest { code: current_code(app, &begun.secret) };
    let confirmed = app.client.confirm_totp_enrollment(with_bearer(&access, confirm)).await.unwrap().into_inner();
    Enrolled { access, secret: begun.secret, recovery_codes: confirmed.recovery_codes }
}

/// Logs in with the password and returns the challenge of the MFA_REQUIRED answer.
async fn challenge(app: &mut TestApp) -> String {
    let status = app.client.login(login_request(STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let info = status.get_error_details().error_info().cloned().expect("ErrorInfo details");
    assert_eq!(info.reason, "MFA_REQUIRED");
    assert_eq!(info.metadata["methods"], "totp,recovery_code");
    info.metadata["challenge"].clone()
}

fn login_request(password: &str) -> LoginRequest {
    LoginRequest { email: EMAIL.into(), password: password.into(), client: None }
}

async fn complete(app: &mut TestApp, challenge: &str, code: &str) -> Result<LoginResponse, tonic::Status> {
    let request = CompleteMfaLoginRequest { challenge: challenge.into(), code: code.into() };
    app.client.complete_mfa_login(request).await.map(tonic::Response::into_inner)
}

async fn claims(app: &mut TestApp, access: &str) -> ValidateTokenResponse {
    app.client.validate_token(ValidateTokenRequest { access_token: access.into() }).await.unwrap().into_inner()
}

fn field_violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

async fn enrolment_makes_login_ask_for_a_code_and_the_tokens_say_so(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, EMAIL).await;
    assert_eq!(claims(&mut app, &access).await.amr, ["pwd"]);

    let wrong = BeginTotpEnrollmentRequest { current_password: "not the password at all".into() };
    let status = app.client.begin_totp_enrollment(with_bearer(&access, wrong)).await.unwrap_err();
    assert_eq!((status.code(), field_violations(&status)), (Code::InvalidArgument, vec!["current_password".into()]));

    let request = BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
    let begun = app.client.begin_totp_enrollment(with_bearer(&access, request)).await.unwrap().into_inner();
    assert!(begun.otpauth_uri.starts_with("otpauth://totp/"), "{}", begun.otpauth_uri);
    assert!(begun.otpauth_uri.contains(&format!("secret={}", begun.secret)));
    // Pending: logins still need the password only.
    app.client.login(login_request(STRONG_PASSWORD)).await.unwrap();

    let wrong_code = ConfirmTotpEnrollmentRequest { code: "000000".into() };
    let status = app.client.confirm_totp_enrollment(with_bearer(&access, wrong_code)).await.unwrap_err();
    assert_eq!((status.code(), field_violations(&status)), (Code::InvalidArgument, vec!["code".into()]));
    let confirm = ConfirmTotpEnrollmentRequest { code: current_code(&app, &begun.secret) };
    let codes = app.client.confirm_totp_enrollment(with_bearer(&access, confirm)).await.unwrap().into_inner();
    assert_eq!(codes.recovery_codes.len(), 10);
    assert!(codes.recovery_codes.iter().all(|c| c.len() == 19 && c.matches('-').count() == 3), "{codes:?}");
    crate::helpers::wait_for_email(&app, EMAIL, "Two-factor login was turned on").await;

    let challenge = challenge(&mut app).await;
    next_step(&app);
    let code = current_code(&app, &begun.secret);
    let login = complete(&mut app, &challenge, &code).await.unwrap();
    let validated = claims(&mut app, &login.access_token).await;
    assert_eq!(validated.amr, ["pwd", "otp"]);
    let auth_time = validated.auth_time.expect("auth_time");
    // A refreshed token keeps the methods and the time of its login.
    let refreshed = app
        .client
        .refresh_session(RefreshSessionRequest { refresh_token: login.refresh_token, client: None })
        .await
        .unwrap()
        .into_inner();
    let validated = claims(&mut app, &refreshed.access_token).await;
    assert_eq!(validated.amr, ["pwd", "otp"]);
    assert_eq!(validated.auth_time, Some(auth_time));
}

async fn a_totp_code_is_accepted_once_and_the_neighbouring_steps_are_allowed(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    next_step(&app);
    let code = current_code(&app, &enrolled.secret);
    let first = challenge(&mut app).await;
    complete(&mut app, &first, &code).await.unwrap();

    // The same code again, within its step, on a fresh challenge: a replay.
    let second = challenge(&mut app).await;
    let replay = complete(&mut app, &second, &code).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated, "{replay:?}");

    // A phone 30 s ahead, or 30 s behind, still works; two steps off does not.
    let now = app.clock_now();
    let behind = complete(&mut app, &second, &code_at(&enrolled.secret, now + Duration::from_secs(60))).await;
    assert_eq!(behind.unwrap_err().code(), Code::Unauthenticated);
    complete(&mut app, &second, &code_at(&enrolled.secret, now + Duration::from_secs(30))).await.unwrap();
    app.clock.advance(Duration::from_secs(90));
    let third = challenge(&mut app).await;
    let now = app.clock_now();
    complete(&mut app, &third, &code_at(&enrolled.secret, now - Duration::from_secs(30))).await.unwrap();
}

async fn a_recovery_code_completes_a_login_once(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    let code = enrolled.recovery_codes[0].clone();
    let first = challenge(&mut app).await;
    // Any case, with or without the dashes.
    let login = complete(&mut app, &first, &code.replace('-', "").to_uppercase()).await.unwrap();
    assert_eq!(claims(&mut app, &login.access_token).await.amr, ["pwd", "otp"]);
    let second = challenge(&mut app).await;
    assert_eq!(complete(&mut app, &second, &code).await.unwrap_err().code(), Code::Unauthenticated);
    complete(&mut app, &second, &enrolled.recovery_codes[1]).await.unwrap();
}

async fn a_wrong_password_answers_as_without_two_factor_login(mut app: TestApp) {
    enrolled(&mut app).await;
    let status = app.client.login(login_request("not the password at all")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.get_error_details().error_info().is_none(), "no hint that a second factor is on");
    let unknown =
        LoginRequest { email: "nobody@example.com".into(), password: "not the password at all".into(), client: None };
    let other = app.client.login(unknown).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (other.code(), other.message()));
}

async fn wrong_codes_count_toward_the_login_lock_out(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    next_step(&app);
    // The password counts one attempt until the second factor is right; four
    // wrong codes make five failures in a row, the most allowed before waiting.
    let challenge = challenge(&mut app).await;
    for _ in 0..4 {
        assert_eq!(complete(&mut app, &challenge, "000000").await.unwrap_err().code(), Code::Unauthenticated);
    }
    let code = current_code(&app, &enrolled.secret);
    let throttled = complete(&mut app, &challenge, &code).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted, "{throttled:?}");
    assert!(throttled.get_error_details().retry_info().is_some());
}

async fn five_codes_spend_the_challenge(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    next_step(&app);
    let challenge = challenge(&mut app).await;
    for _ in 0..5 {
        assert_eq!(complete(&mut app, &challenge, "000000").await.unwrap_err().code(), Code::Unauthenticated);
    }
    let code = current_code(&app, &enrolled.secret);
    let spent = complete(&mut app, &challenge, &code).await.unwrap_err();
    assert_eq!((spent.code(), field_violations(&spent)), (Code::InvalidArgument, vec!["challenge".into()]));
    // A new login is a new challenge.
    let fresh = self::challenge(&mut app).await;
    let code = current_code(&app, &enrolled.secret);
    complete(&mut app, &fresh, &code).await.unwrap();
}

async fn concurrent_completions_of_one_challenge_let_exactly_one_win(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    next_step(&app);
    // Different recovery codes, each good on its own: only the challenge decides.
    let challenge = challenge(&mut app).await;
    let calls: Vec<_> = enrolled.recovery_codes[..4]
        .iter()
        .map(|code| {
            let mut client = app.client.clone();
            let request = CompleteMfaLoginRequest { challenge: challenge.clone(), code: code.clone() };
            tokio::spawn(async move { client.complete_mfa_login(request).await })
        })
        .collect();
    let mut won = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?}"),
        }
    }
    assert_eq!(won, 1);

    // One TOTP code on two challenges at once: the step is accepted once.
    let code = current_code(&app, &enrolled.secret);
    let (first, second) = (self::challenge(&mut app).await, self::challenge(&mut app).await);
    let calls: Vec<_> = [first, second]
        .into_iter()
        .map(|challenge| {
            let mut client = app.client.clone();
            let request = CompleteMfaLoginRequest { challenge, code: code.clone() };
            tokio::spawn(async move { client.complete_mfa_login(request).await })
        })
        .collect();
    let mut won = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        }
    }
    assert_eq!(won, 1);
}

/// The recovery code a user types to turn two-factor login off, while a thief
/// completes a login with the same code: the code works once, and a login
/// whose challenge outlived the second factor does not complete.
async fn turning_it_off_beside_a_login_with_the_same_recovery_code_lets_exactly_one_use_it(mut app: TestApp) {
    let first = enrolled(&mut app).await;
    let access = first.access;
    let mut codes = first.recovery_codes;
    for round in 0..6 {
        if round > 0 && codes.is_empty() {
            // Turned off in the last round: enrol again.
            let request = BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
            let begun = app.client.begin_totp_enrollment(with_bearer(&access, request)).await.unwrap().into_inner();
            next_step(&app);
            let confirm = ConfirmTotpEnrollmentRequest { code: current_code(&app, &begun.secret) };
            codes = app
                .client
                .confirm_totp_enrollment(with_bearer(&access, confirm))
                .await
                .unwrap()
                .into_inner()
                .recovery_codes;
        }
        let challenge = challenge(&mut app).await;
        let code = codes[0].clone();
        let mut disabling = app.client.clone();
        let disable = DisableTotpRequest { current_password: STRONG_PASSWORD.into(), code: code.clone() };
        let disable = tokio::spawn({
            let access = access.clone();
            async move { disabling.disable_totp(with_bearer(&access, disable)).await }
        });
        let mut completing = app.client.clone();
        let complete_request = CompleteMfaLoginRequest { challenge: challenge.clone(), code };
        let completion = tokio::spawn(async move { completing.complete_mfa_login(complete_request).await });
        let (disabled, completed) = (disable.await.unwrap(), completion.await.unwrap());
        match (&disabled, &completed) {
            (Ok(_), Err(status)) => {
                assert!(matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument), "{status:?}");
                // Off now: the challenge is gone with the factor, whatever code comes with it.
                assert!(complete(&mut app, &challenge, &codes[1]).await.is_err());
                app.client.login(login_request(STRONG_PASSWORD)).await.unwrap();
                codes.clear();
            }
            (Err(status), Ok(_)) => {
                assert_eq!(field_violations(status), ["code"], "{status:?}");
                codes.remove(0);
            }
            other => panic!("round {round}: the code worked twice or never: {other:?}"),
        }
    }
}

async fn new_recovery_codes_replace_the_old_ones(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    let request = RegenerateRecoveryCodesRequest { code: "000000".into() };
    let wrong = app.client.regenerate_recovery_codes(with_bearer(&enrolled.access, request)).await.unwrap_err();
    assert_eq!((wrong.code(), field_violations(&wrong)), (Code::InvalidArgument, vec!["code".into()]));
    let request = RegenerateRecoveryCodesRequest { code: enrolled.recovery_codes[0].clone() };
    let fresh = app
        .client
        .regenerate_recovery_codes(with_bearer(&enrolled.access, request))
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    assert_eq!(fresh.len(), 10);
    let challenge = challenge(&mut app).await;
    assert_eq!(
        complete(&mut app, &challenge, &enrolled.recovery_codes[1]).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    complete(&mut app, &challenge, &fresh[0]).await.unwrap();
}

async fn turning_two_factor_login_off_needs_the_password_and_a_code_and_sends_a_notice(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    next_step(&app);
    let code = current_code(&app, &enrolled.secret);
    let request = DisableTotpRequest { current_password: "not the password at all".into(), code: code.clone() };
    let wrong = app.client.disable_totp(with_bearer(&enrolled.access, request)).await.unwrap_err();
    assert_eq!(field_violations(&wrong), ["current_password"]);
    let request = DisableTotpRequest { current_password: STRONG_PASSWORD.into(), code: "000000".into() };
    let wrong = app.client.disable_totp(with_bearer(&enrolled.access, request)).await.unwrap_err();
    assert_eq!(field_violations(&wrong), ["code"]);
    let request = DisableTotpRequest { current_password: STRONG_PASSWORD.into(), code };
    app.client.disable_totp(with_bearer(&enrolled.access, request)).await.unwrap();
    crate::helpers::wait_for_email(&app, EMAIL, "Two-factor login was turned off").await;

    let login = app.client.login(login_request(STRONG_PASSWORD)).await.unwrap().into_inner();
    assert_eq!(claims(&mut app, &login.access_token).await.amr, ["pwd"]);
    let request = RegenerateRecoveryCodesRequest { code: enrolled.recovery_codes[0].clone() };
    let off = app.client.regenerate_recovery_codes(with_bearer(&enrolled.access, request)).await.unwrap_err();
    assert_eq!(off.code(), Code::FailedPrecondition);
    assert_eq!(off.get_error_details().error_info().unwrap().reason, "MFA_NOT_ENABLED");
}

async fn a_second_enrolment_replaces_the_pending_secret(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, EMAIL).await;
    let begin = || BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
    let first = app.client.begin_totp_enrollment(with_bearer(&access, begin())).await.unwrap().into_inner();
    let second = app.client.begin_totp_enrollment(with_bearer(&access, begin())).await.unwrap().into_inner();
    assert_ne!(first.secret, second.secret);
    let stale = ConfirmTotpEnrollmentRequest { code: current_code(&app, &first.secret) };
    let status = app.client.confirm_totp_enrollment(with_bearer(&access, stale)).await.unwrap_err();
    assert_eq!(field_violations(&status), ["code"]);
    let confirm = ConfirmTotpEnrollmentRequest { code: current_code(&app, &second.secret) };
    app.client.confirm_totp_enrollment(with_bearer(&access, confirm)).await.unwrap();
    let again = app.client.begin_totp_enrollment(with_bearer(&access, begin())).await.unwrap_err();
    assert_eq!(again.get_error_details().error_info().unwrap().reason, "MFA_ALREADY_ENABLED");
}

async fn without_the_key_nobody_can_enrol(mut app: TestApp) {
    let (_, access, _) = logged_in(&mut app, EMAIL).await;
    let request = BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
    let status = app.client.begin_totp_enrollment(with_bearer(&access, request)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.get_error_details().error_info().unwrap().reason, "MFA_NOT_CONFIGURED");
}

async fn start_up_refuses_to_run_without_the_key_once_someone_enrolled(backend: testkit::Backend) {
    let Some(mut app) = spawn_app(backend).await else { return };
    enrolled(&mut app).await;
    let mut settings = test_settings(&app.database.url());
    settings.mfa.encryption_key = None;
    let error = Application::build(settings, Overrides::default()).await.err().expect("start-up fails");
    assert!(format!("{error:#}").contains("IDENTITY_MFA_ENCRYPTION_KEY"), "{error:#}");
}

async fn a_two_factor_login_records_a_session_created_event_that_says_so(mut app: TestApp) {
    use base64::Engine;
    use identity::infrastructure::outbox::user_events::proto::SessionCreated;
    use prost::Message;
    use sea_orm::{ConnectionTrait, Database, Statement};

    let enrolled = enrolled(&mut app).await;
    let challenge = challenge(&mut app).await;
    next_step(&app);
    let code = current_code(&app, &enrolled.secret);
    complete(&mut app, &challenge, &code).await.unwrap();

    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox WHERE event_type = 'identity.v1.session.created' ORDER BY stream_position",
        ))
        .await
        .unwrap();
    let created: Vec<SessionCreated> = rows
        .iter()
        .map(|row| {
            let payload: String = row.try_get("", "payload").unwrap();
            let bytes = base64::engine::general_purpose::STANDARD.decode(payload).unwrap();
            SessionCreated::decode(bytes.as_slice()).unwrap()
        })
        .collect();
    // The password login before enrolment, then the one completed with a code
    // (the password step of that login opened no session, and announced none).
    assert_eq!(created.iter().map(|c| c.used_second_factor).collect::<Vec<_>>(), [false, true]);
}

async fn support_can_reset_a_users_second_factor_and_the_user_is_told(mut app: TestApp) {
    let user_id = crate::helpers::verified_user(&mut app, EMAIL).await;
    let (access, _) = crate::helpers::login_tokens(&mut app, EMAIL, STRONG_PASSWORD).await;
    let begin = BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
    let begun = app.client.begin_totp_enrollment(with_bearer(&access, begin)).await.unwrap().into_inner();
    let confirm = ConfirmTotpEnrollmentRequest { code: current_code(&app, &begun.secret) };
    app.client.confirm_totp_enrollment(with_bearer(&access, confirm)).await.unwrap();
    challenge(&mut app).await;

    let mut admin = admin(&app).await;
    admin.reset_mfa(keyed(ResetMfaRequest { user_id: user_id.clone() })).await.unwrap();
    crate::helpers::wait_for_email(&app, EMAIL, "Two-factor login was turned off").await;
    app.client.login(login_request(STRONG_PASSWORD)).await.unwrap();
    // Idempotent; an unknown user is NOT_FOUND.
    admin.reset_mfa(keyed(ResetMfaRequest { user_id })).await.unwrap();
    let unknown = ResetMfaRequest { user_id: uuid::Uuid::now_v7().to_string() };
    assert_eq!(admin.reset_mfa(keyed(unknown)).await.unwrap_err().code(), Code::NotFound);
}

async fn an_expired_challenge_is_refused_and_pruned(mut app: TestApp) {
    let enrolled = enrolled(&mut app).await;
    let challenge = challenge(&mut app).await;
    app.clock.advance(Duration::from_secs(5 * 60 + 1));
    let code = current_code(&app, &enrolled.secret);
    let expired = complete(&mut app, &challenge, &code).await.unwrap_err();
    assert_eq!(field_violations(&expired), ["challenge"]);
    assert_eq!(crate::pruning::prune(&app).await.mfa_challenges, 1);
}

async fn an_enrolment_never_confirmed_is_pruned_and_a_confirmed_one_stays(mut app: TestApp) {
    enrolled(&mut app).await;
    let (_, other, _) = logged_in(&mut app, "bob@example.com").await;
    let request = BeginTotpEnrollmentRequest { current_password: STRONG_PASSWORD.into() };
    let begun = app.client.begin_totp_enrollment(with_bearer(&other, request)).await.unwrap().into_inner();
    let expires_at = OffsetDateTime::from_unix_timestamp(begun.expires_at.unwrap().seconds).unwrap();
    app.clock.advance(Duration::try_from(expires_at - app.clock_now()).unwrap() + Duration::from_secs(1));
    let report = crate::pruning::prune(&app).await;
    assert_eq!(report.pending_enrolments, 1);
    let late = ConfirmTotpEnrollmentRequest { code: current_code(&app, &begun.secret) };
    assert!(app.client.confirm_totp_enrollment(with_bearer(&other, late)).await.is_err());
    // Ada's second factor is untouched.
    challenge(&mut app).await;
}

/// A server configured with more argon2 memory than the hash was made with
/// upgrades it when the password proves right, though the login then waits
/// for its second factor (and stores no session that could carry the upgrade).
async fn a_login_that_stops_at_the_second_factor_upgrades_a_weak_hash(mut app: TestApp) {
    use sea_orm::{ConnectionTrait, Database, Statement};

    let enrolled = enrolled(&mut app).await;
    let url = app.database.url();
    let stored = || async {
        let db = Database::connect(url.as_str()).await.unwrap();
        let statement = Statement::from_string(db.get_database_backend(), "SELECT password_hash FROM users");
        db.query_one_raw(statement).await.unwrap().unwrap().try_get::<String>("", "password_hash").unwrap()
    };
    assert!(stored().await.contains("m=256,"));
    // The enrolment spent this step's code: the second server starts a step on.
    next_step(&app);
    let mut stronger = spawn_replica(&app, |s| s.passwords.argon2.m_cost = 512).await;
    let status = stronger.client.login(login_request(STRONG_PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(stored().await.contains("m=512,"), "the hash was upgraded at the password step");
    let challenge = status.get_error_details().error_info().unwrap().metadata["challenge"].clone();
    let code = current_code(&app, &enrolled.secret);
    let request = CompleteMfaLoginRequest { challenge, code };
    stronger.client.complete_mfa_login(request).await.expect("the login completes with the upgraded hash");
}

/// A two-factor user brought over from Django: each password step wants to
/// replace the Django hash with argon2id while the user changes the password.
/// Whatever the order, the new password is the one that works afterwards.
async fn password_steps_upgrading_a_django_hash_never_undo_a_password_change_beside_them(mut app: TestApp) {
    use identity::grpc::proto::ChangePasswordRequest;

    const NEW_PASSWORD: &str = "velvet harbor lantern ninety";
    let db = sea_orm::Database::connect(app.database.url().as_str()).await.unwrap();
    for trial in 0..6_u64 {
        let email = format!("imported-mfa{trial}@example.com");
        let login = |password: &str| LoginRequest { email: email.clone(), password: password.into(), client: None };
        let Enrolled { access, .. } = enrolled_as(&mut app, &email).await;
        let django = crate::django_passwords::pbkdf2("pbkdf2_sha256", STRONG_PASSWORD, &format!("mfa-salt{trial}"));
        crate::django_passwords::set_hash(&db, &email, &django).await;

        let steps: Vec<_> = (0..4)
            .map(|_| {
                let mut client = app.client.clone();
                let request = login(STRONG_PASSWORD);
                tokio::spawn(async move { client.login(request).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(trial * 3)).await;
        let change =
            ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: NEW_PASSWORD.into() };
        app.client
            .change_password(with_bearer(&access, change))
            .await
            .unwrap_or_else(|e| panic!("trial {trial}: {e:?}"));
        for step in steps {
            let status = step.await.unwrap().unwrap_err();
            // The second factor is asked for, or the password lost to the change.
            assert!(
                matches!(status.code(), Code::FailedPrecondition | Code::Unauthenticated),
                "trial {trial}: {status:?}"
            );
        }

        let stored = crate::django_passwords::stored_hash(&db, &email).await;
        assert!(stored.starts_with("$argon2id$"), "trial {trial}: {stored}");
        let new = app.client.login(login(NEW_PASSWORD)).await.unwrap_err();
        assert_eq!(new.code(), Code::FailedPrecondition, "trial {trial}: the new password works: {new:?}");
        let old = app.client.login(login(STRONG_PASSWORD)).await.unwrap_err();
        assert_eq!(old.code(), Code::Unauthenticated, "trial {trial}: the old password came back");
    }
}
