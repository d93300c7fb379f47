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
    grpc::proto::{LoginRequest, RefreshSessionRequest},
    infrastructure::sea_orm::{DatabaseSettings, SeaOrmDeliveryLog, connect},
};
use testkit::Backend;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{STRONG_PASSWORD, spawn_app, verified_user};

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
    let settings = DatabaseSettings {
        url: app.database.url().into(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
        auto_migrate: false,
    };
    let mailer = SeaOrmDeliveryLog::new(connect(&settings).await.unwrap());
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
