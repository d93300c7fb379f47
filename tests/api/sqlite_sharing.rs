//! On embedded defaults the server and the mailer share one SQLite file: two
//! processes, two connections, two writers. A transaction that reads before it
//! writes must not fail because the other one committed in between (SQLite's
//! SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out). SQLite-only by
//! nature: PostgreSQL has no such failure mode to test.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use identity::{
    domain::ports::DeliveryLog,
    grpc::proto::ValidateTokenRequest,
    grpc::proto::{LoginRequest, RefreshSessionRequest},
    infrastructure::sea_orm::{DatabaseSettings, SeaOrmDeliveryLog, begin_write, connect, connect_readers},
};
use sea_orm::ConnectionTrait;
use testkit::Backend;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{STRONG_PASSWORD, logged_in, spawn_app, spawn_app_with, verified_user};

const CALLERS: usize = 4;
const ROUNDS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_refreshes_never_fail_while_the_mailer_writes_to_the_same_sqlite_file() {
    let Some(mut app) = spawn_app(Backend::Sqlite).await else { return };
    let mut emails = Vec::new();
    for caller in 0..CALLERS {
        let email = format!("shared-file-{caller}@example.com");
        verified_user(&mut app, &email).await;
        emails.push(email);
    }

    // The mailer's own connection, opened as the mailer opens it, recording
    // deliveries as fast as it can: each record is a commit of its own.
    let mailer = SeaOrmDeliveryLog::new(connect(&settings_for(&app.database.url())).await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut recorded = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                mailer
                    .record_delivered(Uuid::now_v7(), "user.test", "sendgrid", OffsetDateTime::now_utc())
                    .await
                    .unwrap();
                recorded += 1;
            }
            recorded
        }
    });

    let callers = emails.into_iter().map(|email| {
        let mut client = app.client.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for _ in 0..ROUNDS {
                let login = LoginRequest { email: email.clone(), password: STRONG_PASSWORD.into(), client: None };
                let refresh_token = match client.login(login).await {
                    Ok(response) => response.into_inner().refresh_token,
                    Err(status) => {
                        failures.push(format!("Login: {status}"));
                        continue;
                    }
                };
                if let Err(status) = client.refresh_session(RefreshSessionRequest { refresh_token, client: None }).await
                {
                    failures.push(format!("RefreshSession: {status}"));
                }
            }
            failures
        })
    });
    let mut failures = Vec::new();
    for caller in futures_util::future::join_all(callers).await {
        failures.extend(caller.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let recorded = writer.await.unwrap();

    assert!(recorded > 0, "the mailer's connection wrote nothing beside the calls");
    let first = &failures[..failures.len().min(5)];
    assert!(failures.is_empty(), "{} of {} calls failed, the first: {first:?}", failures.len(), 2 * CALLERS * ROUNDS);
}

/// How another process (the mailer) opens the same file.
fn settings_for(url: &str) -> DatabaseSettings {
    DatabaseSettings {
        url: url.to_owned().into(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
        auto_migrate: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_check_answers_while_a_login_waits_for_the_sqlite_write_lock() {
    // No cache: every check reads the user and the session.
    let Some(mut app) =
        spawn_app_with(Backend::Sqlite, |settings| settings.tokens.revocation_cache_ttl = Duration::ZERO).await
    else {
        return;
    };
    let (_, access_token, _) = logged_in(&mut app, "checked@example.com").await;
    verified_user(&mut app, "waiting@example.com").await;

    // Another process holds the write lock; the server's writer waits for it
    // (its busy timeout) in the login below.
    let other = connect(&settings_for(&app.database.url())).await.unwrap();
    let held = begin_write(&other).await.unwrap();
    let login = tokio::spawn({
        let mut client = app.client.clone();
        async move {
            let request =
                LoginRequest { email: "waiting@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
            client.login(request).await
        }
    });
    // Time for the login to hash its password and reach its transaction.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let check = tokio::time::timeout(
        Duration::from_secs(3),
        app.client.validate_token(ValidateTokenRequest { access_token: access_token.clone() }),
    )
    .await;
    held.rollback().await.unwrap();

    let answer = check.expect("the token check waited behind the login's write transaction");
    assert!(answer.is_ok(), "{answer:?}");
    assert!(login.await.unwrap().is_ok(), "the login failed once the lock was free");
}

#[tokio::test]
async fn the_sqlite_readers_see_every_commit_and_refuse_to_write() {
    let Some(database) = testkit::TestDatabase::for_test(Backend::Sqlite).await else { return };
    let settings = DatabaseSettings { max_connections: 2, ..settings_for(&database.url()) };
    let writer = connect(&settings).await.unwrap();
    identity::infrastructure::sea_orm::migrate(&writer).await.unwrap();
    let readers = connect_readers(&settings, &writer).await.unwrap();
    let count = "SELECT COUNT(*) AS n FROM mailer_deliveries";
    let counted = |db: &sea_orm::DatabaseConnection| {
        let db = db.clone();
        async move {
            let row =
                db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), count)).await.unwrap();
            row.unwrap().try_get::<i64>("", "n").unwrap()
        }
    };
    assert_eq!(counted(&readers).await, 0);

    let log = SeaOrmDeliveryLog::new(writer.clone());
    for delivered in 1..=3 {
        log.record_delivered(Uuid::now_v7(), "user.test", "sendgrid", OffsetDateTime::now_utc()).await.unwrap();
        assert_eq!(counted(&readers).await, delivered, "a reader missed a commit");
    }

    let refused = readers.execute_unprepared("DELETE FROM mailer_deliveries").await;
    assert!(refused.is_err(), "a reader wrote: {refused:?}");
    assert_eq!(counted(&writer).await, 3);
}

#[tokio::test]
async fn an_in_memory_sqlite_database_reads_through_its_one_connection() {
    let settings = settings_for("sqlite::memory:");
    let writer = connect(&settings).await.unwrap();
    let readers = connect_readers(&settings, &writer).await.unwrap();
    writer.execute_unprepared("CREATE TABLE t (x INTEGER)").await.unwrap();
    // A second connection would open a second, empty database.
    readers.execute_unprepared("INSERT INTO t VALUES (1)").await.unwrap();
}
