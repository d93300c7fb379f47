//! How many SQL statements each hot RPC runs, read from its log line
//! (`db_statements`) on both databases, with the real binary. The figures are
//! printed for the performance notes; the budgets keep a change from quietly
//! adding round trips to a call that every request makes.

use std::collections::BTreeMap;

use identity::grpc::proto::{
    GetCurrentUserRequest, LoginRequest, RefreshSessionRequest, SignUpRequest, ValidateTokenRequest,
    user_service_client::UserServiceClient,
};
use sea_orm::{ConnectionTrait, Database};
use testkit::{Backend, TestDatabase, on_both_databases};

use crate::{
    helpers::{STRONG_PASSWORD, with_bearer},
    process_logs::{LoggedProcess, TempDatabase, message_of, server_command},
};

on_both_databases!(each_hot_call_logs_its_statements_and_stays_within_its_budget);

/// Statements per call at most (BEGIN and COMMIT not counted), on SQLite and
/// on PostgreSQL. A budget is a ceiling to lower as calls get leaner, never one
/// to raise without a reason. Statements SQLite receives together in one
/// batch count one each. SignUp and Login each write a user event
/// (`user.signed_up`, `session.created`): on SQLite its stream position (one
/// upsert) and its outbox row, on PostgreSQL both in one statement; likewise
/// RefreshSession's claim of the old session and its insert of the new one.
/// On PostgreSQL each rate-limit check is a statement of its own (the shared
/// budgets' upsert): SignUp and Login check the caller's address and the
/// email, RefreshSession the address.
const BUDGETS: [(&str, u32, u32); 5] = [
    ("SignUp", 6, 6 - 1 + 2),
    ("Login", 8, 8 - 1 + 2),
    ("RefreshSession", 4, 4 - 1 + 1),
    ("ValidateToken", 0, 0),
    ("GetCurrentUser", 1, 1),
];

async fn each_hot_call_logs_its_statements_and_stays_within_its_budget(backend: Backend) {
    let Some(database) = TestDatabase::for_test(backend).await else { return };
    let unused = TempDatabase::new();
    let port = testkit::free_port().unwrap();
    let url = database.url();
    // The relay and the pruner run outside any call, so they cannot skew a count.
    let mut server = LoggedProcess::start(server_command(
        port,
        &unused.0,
        &[("IDENTITY_DATABASE_URL", url.as_str()), ("IDENTITY_ARGON2_M_COST", "256"), ("IDENTITY_ARGON2_T_COST", "1")],
    ));
    server.until_message("identity server listening").await;
    let mut client = UserServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();

    let email = "counted@example.com".to_owned();
    client
        .sign_up(SignUpRequest { email: email.clone(), password: STRONG_PASSWORD.into(), ..Default::default() })
        .await
        .unwrap();
    let db = Database::connect(url.as_str()).await.unwrap();
    db.execute_unprepared("UPDATE users SET status = 'active', verified_at = created_at").await.unwrap();
    db.close().await.unwrap();
    let login = client
        .login(LoginRequest { email, password: STRONG_PASSWORD.into(), client: None })
        .await
        .unwrap()
        .into_inner();
    let refreshed = client
        .refresh_session(RefreshSessionRequest { refresh_token: login.refresh_token, client: None })
        .await
        .unwrap()
        .into_inner();
    // The first validation of a session fills the caches; the count kept is the
    // last call's, the one every later validation repeats.
    for _ in 0..2 {
        client.validate_token(ValidateTokenRequest { access_token: refreshed.access_token.clone() }).await.unwrap();
    }
    client.get_current_user(with_bearer(&refreshed.access_token, GetCurrentUserRequest {})).await.unwrap();
    let log = server.stop().await;

    // Collected in log order: a method called twice keeps its last count.
    let counts: BTreeMap<String, u64> = log
        .iter()
        .filter(|line| message_of(line).as_deref() == Some("rpc finished"))
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((value["rpc.method"].as_str()?.to_owned(), value["db_statements"].as_u64()?))
        })
        .collect();
    println!("statements per call on {}: {counts:?}", backend.name());
    for (method, sqlite, postgres) in BUDGETS {
        let budget = if backend == Backend::Postgres { postgres } else { sqlite };
        let count =
            counts.get(method).unwrap_or_else(|| panic!("no statement count for {method} in\n{}", log.join("\n")));
        assert!(*count <= u64::from(budget), "{method} ran {count} statements, over its budget of {budget}");
    }
    // A call that runs statements is seen running them: the count is not stuck at zero.
    assert!(counts["Login"] > 0 && counts["SignUp"] > 0, "{counts:?}");
}
