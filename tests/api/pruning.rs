//! The pruning task deletes what no longer serves a purpose and nothing else.
//! A run is triggered here through the same use case the server schedules, on
//! the test server's database and clock.

use std::{sync::Arc, time::Duration};

use identity::{
    application::PruneStaleRecords,
    domain::ports::{Clock, PruneReport},
    grpc::proto::{LoginRequest, RefreshSessionRequest, RequestPasswordResetRequest},
    infrastructure::sea_orm::SeaOrmPruner,
};
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::sync::Notify;

use testkit::on_both_databases;

use crate::helpers::{
    STRONG_PASSWORD, TestApp, login_tokens, sign_up_request, spawn_app, verified_user, wait_for_email,
};

on_both_databases!(builder = spawn_app; pruning_deletes_stale_sessions_throttles_tokens_and_abandoned_sign_ups_only);

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

pub(crate) async fn prune(app: &TestApp) -> PruneReport {
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let task = PruneStaleRecords {
        pruner: Arc::new(SeaOrmPruner::new(db, Arc::new(Notify::new()))),
        clock: Arc::clone(&app.clock) as Arc<dyn Clock>,
        pending_signup_retention: 7 * DAY,
        // Small batches, so that a run needs several of them.
        batch_size: 2,
        max_batches: 100,
    };
    task.execute().await.unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn pruning_deletes_stale_sessions_throttles_tokens_and_abandoned_sign_ups_only(mut app: TestApp) {
    // An active user with a spent verification token, a rotated session, a live
    // one from the rotation and another live login, and a reset token.
    verified_user(&mut app, "ada@example.com").await;
    let (_, first_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    let rotated =
        app.client.refresh_session(RefreshSessionRequest { refresh_token: first_refresh, client: None }).await.unwrap();
    let (_, live_refresh) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    app.client.request_password_reset(RequestPasswordResetRequest { email: "ada@example.com".into() }).await.unwrap();
    wait_for_email(&app, "ada@example.com", "Reset your password").await;
    // Throttle rows for addresses nobody registered (two each: the account's,
    // and the account's from this address): what an attacker grows.
    for i in 0..5 {
        let login =
            LoginRequest { email: format!("ghost{i}@example.com"), password: "wrong-password".into(), client: None };
        app.client.login(login).await.unwrap_err();
    }
    // A sign-up nobody verifies.
    app.client.sign_up(sign_up_request("abandoned@example.com")).await.unwrap();
    assert_eq!(prune(&app).await, PruneReport::default(), "nothing is stale yet");

    // The test clock stands still between advances: keep clear of the cut-offs.
    app.clock.advance(2 * DAY + HOUR);
    app.client.sign_up(sign_up_request("recent@example.com")).await.unwrap();
    let report = prune(&app).await;
    assert_eq!(report.sessions, 1, "the rotated session");
    // The ghosts' ten, and ada's account counter, forgiven at her last login.
    assert_eq!(report.login_throttles, 11);
    assert_eq!(report.verification_tokens, 1, "ada's spent token; abandoned's last one stays with them");
    assert_eq!(report.password_reset_tokens, 1, "the expired reset token");
    assert_eq!(report.pending_users, 0, "abandoned's link expired only a day ago");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sessions").await, 2);
    // What stays: the mark of the address ada logs in from, which the
    // account-wide lock spares for 90 days.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM login_throttles").await, 1);

    // A week after its link expired, the abandoned sign-up goes; the recent one,
    // though signed up more than a week before, has a link that expired since.
    app.clock.advance(7 * DAY + 12 * HOUR);
    let report = prune(&app).await;
    assert_eq!(report.pending_users, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users WHERE email = 'abandoned@example.com'").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users WHERE email = 'recent@example.com'").await, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM single_use_tokens WHERE purpose = 'email_verification'").await,
        1,
        "recent's link"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox WHERE event_type = 'identity.v1.user.deleted'").await, 1);

    // Live sessions were kept: both still refresh.
    let rotated_refresh = rotated.into_inner().refresh_token;
    for refresh_token in [rotated_refresh, live_refresh] {
        app.client
            .refresh_session(RefreshSessionRequest { refresh_token, client: None })
            .await
            .expect("a live session survives");
    }
    assert_eq!(prune(&app).await, PruneReport::default(), "a second run finds nothing");
}

async fn the_server_prunes_on_its_own(backend: crate::helpers::Backend) {
    let Some(mut app) =
        crate::helpers::spawn_app_with(backend, |s| s.pruning.interval = Duration::from_millis(100)).await
    else {
        return;
    };
    let login = LoginRequest { email: "ghost@example.com".into(), password: "wrong-password".into(), client: None };
    app.client.login(login).await.unwrap_err();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM login_throttles").await, 2, "the account's row and the address's");
    app.clock.advance(2 * DAY);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&app, "SELECT COUNT(*) FROM login_throttles").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the server never pruned the stale throttle row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_prunes_on_its_own_every_interval_on_sqlite() {
    the_server_prunes_on_its_own(crate::helpers::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_prunes_on_its_own_every_interval_on_postgres() {
    the_server_prunes_on_its_own(crate::helpers::Backend::Postgres).await;
}
