//! Two servers on one PostgreSQL database, as two replicas behind one Service:
//! they spend from the same call budgets, and a revocation made on one is
//! refused by the other without waiting for its revocation cache to expire.

use std::time::{Duration, Instant};

use identity::grpc::proto::{
    ChangePasswordRequest, DeleteUserRequest, DisableUserRequest, ListSessionsRequest, LogoutAllRequest, LogoutRequest,
    RevokeSessionRequest, ValidateTokenRequest, VerifyEmailRequest,
};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tonic::Code;

use crate::{
    admin::{admin, admin_app, keyed},
    helpers::{
        Backend, Replica, STRONG_PASSWORD, TestApp, TestDatabase, logged_in, login_tokens, sign_up_request,
        spawn_app_with, spawn_replica, with_bearer,
    },
};

/// Long enough that only a notice can make the second replica read again
/// within a test.
const NEVER_EXPIRES: Duration = Duration::from_secs(3600);
/// How long a test waits for a replica to hear of a revocation. The README
/// promises well under a second; this bound only keeps a broken build from
/// hanging the suite.
const PATIENCE: Duration = Duration::from_secs(10);

async fn accepts(replica: &mut Replica, token: &str) -> bool {
    let request = ValidateTokenRequest { access_token: token.into() };
    match replica.client.validate_token(request).await {
        Ok(_) => true,
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            false
        }
    }
}

/// Whether the replica comes to refuse `token` within [`PATIENCE`]; how long
/// it took is printed (for the README's figure), never asserted.
async fn comes_to_refuse(replica: &mut Replica, token: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if !accepts(replica, token).await {
            println!("refused by the other replica after {:?}", started.elapsed());
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_on_one_replica_is_spent_on_the_other() {
    let Some(mut a) = spawn_app_with(Backend::Postgres, |s| s.limits.per_address = 3).await else { return };
    let mut b = spawn_replica(&a, |s| s.limits.per_address = 3).await;
    a.client.sign_up(sign_up_request("one@example.com")).await.unwrap();
    b.client.sign_up(sign_up_request("two@example.com")).await.unwrap();
    a.client.sign_up(sign_up_request("three@example.com")).await.unwrap();
    for (name, client) in [("a", &mut a.client), ("b", &mut b.client)] {
        let status = client.sign_up(sign_up_request("four@example.com")).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "replica {name}: {status:?}");
    }
    // Each operation still has a budget of its own.
    let status = b.client.verify_email(VerifyEmailRequest { token: format!("{:0>42}A", 7) }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shared_limits_off_each_replica_spends_a_budget_of_its_own() {
    let own = |s: &mut identity::config::Settings| {
        s.limits.per_address = 2;
        s.limits.shared = false;
    };
    let Some(mut a) = spawn_app_with(Backend::Postgres, own).await else { return };
    let mut b = spawn_replica(&a, own).await;
    for i in 0..2 {
        a.client.sign_up(sign_up_request(&format!("a{i}@example.com"))).await.unwrap();
        b.client.sign_up(sign_up_request(&format!("b{i}@example.com"))).await.unwrap();
    }
    let status = a.client.sign_up(sign_up_request("a2@example.com")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_raced_across_both_replicas_gets_exactly_the_shared_budget() {
    const BUDGET: u32 = 10;
    const CALLS: usize = 40;
    let Some(a) = spawn_app_with(Backend::Postgres, |s| s.limits.per_address = BUDGET).await else { return };
    let b = spawn_replica(&a, |s| s.limits.per_address = BUDGET).await;
    let started = Instant::now();
    let calls = (0..CALLS).map(|i| {
        let mut client = if i % 2 == 0 { a.client.clone() } else { b.client.clone() };
        tokio::spawn(async move {
            // An unknown token: cheap, and limited per address like any secret.
            client.verify_email(VerifyEmailRequest { token: format!("{i:0>42}A") }).await.unwrap_err().code()
        })
    });
    let codes = futures_util::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let allowed = codes.iter().filter(|code| *code.as_ref().unwrap() != Code::ResourceExhausted).count();
    // The budget refills one call every 60 s / BUDGET while the burst runs.
    let refilled = usize::try_from(elapsed.as_secs() / u64::from(60 / BUDGET)).unwrap();
    assert!(
        allowed >= BUDGET as usize && allowed <= BUDGET as usize + refilled,
        "{allowed} of {CALLS} calls got through a budget of {BUDGET} (+{refilled} refilled): {codes:?}"
    );
}

/// Logs in on `a` and has `b` cache the token as valid.
async fn cached_on_both(a: &mut TestApp, b: &mut Replica, email: &str) -> (String, String, String) {
    let (user_id, access, refresh) = logged_in(a, email).await;
    assert!(accepts(b, &access).await, "the second replica honours a fresh token");
    (user_id, access, refresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_revocation_on_one_replica_is_refused_by_the_other_without_its_cache_expiring() {
    let Some(mut a) = admin_app(Backend::Postgres).await else { return };
    let mut b = spawn_replica(&a, |s| s.tokens.revocation_cache_ttl = NEVER_EXPIRES).await;

    let (_, access, _) = cached_on_both(&mut a, &mut b, "revoke-one@example.com").await;
    let listed = a.client.list_sessions(with_bearer(&access, ListSessionsRequest {})).await.unwrap().into_inner();
    let session_id = listed.sessions[0].id.clone();
    a.client.revoke_session(with_bearer(&access, RevokeSessionRequest { session_id })).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "RevokeSession");

    let (_, access, refresh) = cached_on_both(&mut a, &mut b, "logout@example.com").await;
    a.client.logout(LogoutRequest { refresh_token: refresh }).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "Logout");

    let (_, access, _) = cached_on_both(&mut a, &mut b, "logout-all@example.com").await;
    a.client.logout_all(with_bearer(&access, LogoutAllRequest {})).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "LogoutAll");

    let (_, first, _) = cached_on_both(&mut a, &mut b, "change@example.com").await;
    let (other, _) = login_tokens(&mut a, "change@example.com", STRONG_PASSWORD).await;
    assert!(accepts(&mut b, &other).await);
    let change = ChangePasswordRequest {
        current_password: STRONG_PASSWORD.into(),
        new_password: "another-plum-orbit-88?".into(),
    };
    a.client.change_password(with_bearer(&first, change)).await.unwrap();
    assert!(comes_to_refuse(&mut b, &other).await, "ChangePassword ends the other sessions");

    let mut operator = admin(&a).await;
    let (user_id, access, _) = cached_on_both(&mut a, &mut b, "disable@example.com").await;
    operator.disable_user(keyed(DisableUserRequest { user_id })).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "DisableUser");

    let (user_id, access, _) = cached_on_both(&mut a, &mut b, "delete@example.com").await;
    operator.delete_user(keyed(DeleteUserRequest { user_id })).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "DeleteUser");
}

/// The listeners of both replicas, as PostgreSQL sees them.
async fn listener_connections(database: &TestDatabase, terminate: bool) -> u64 {
    let TestDatabase::Postgres { admin_url, name, .. } = database else { panic!("PostgreSQL only") };
    let admin = Database::connect(admin_url.as_str()).await.unwrap();
    let select = if terminate { "pg_terminate_backend(pid)" } else { "pid" };
    let sql = format!(
        "SELECT {select} FROM pg_stat_activity WHERE application_name = $1 AND datname = $2 AND pid <> pg_backend_pid()"
    );
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [identity::infrastructure::postgres::APPLICATION_NAME.into(), name.clone().into()],
    );
    let rows = admin.query_all_raw(statement).await.unwrap();
    u64::try_from(rows.len()).unwrap()
}

/// A revocation nobody announces: the user's sessions ended straight in the
/// database, as no replica would.
async fn revoke_unannounced(app: &TestApp, user_id: String) {
    let db = Database::connect(app.database.url()).await.unwrap();
    let revoke = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE sessions SET revoked_at = now() WHERE user_id = $1::uuid",
        [user_id.into()],
    );
    db.execute_raw(revoke).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_revocation_channel_dropped_reads_again_whatever_it_may_have_missed() {
    let Some(mut a) = spawn_app_with(Backend::Postgres, |_| {}).await else { return };
    let mut b = spawn_replica(&a, |s| s.tokens.revocation_cache_ttl = NEVER_EXPIRES).await;
    let (user_id, access, _) = cached_on_both(&mut a, &mut b, "dropped@example.com").await;

    revoke_unannounced(&a, user_id).await;
    assert!(accepts(&mut b, &access).await, "unannounced, the revocation waits for the cache to expire");

    // Both listeners wait for their connection to be up; then cut them.
    let deadline = Instant::now() + PATIENCE;
    while listener_connections(&a.database, false).await < 2 {
        assert!(Instant::now() < deadline, "both replicas listen for revocations");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listener_connections(&a.database, true).await, 2);
    assert!(comes_to_refuse(&mut b, &access).await, "reconnected, the replica forgot what it had cached");

    // And notices flow again after the reconnection.
    let (_, access, refresh) = cached_on_both(&mut a, &mut b, "after@example.com").await;
    a.client.logout(LogoutRequest { refresh_token: refresh }).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "a notice sent after the reconnection is heard");
}

/// A channel quiet for longer than the listener's idle ping (15 s) is checked
/// and kept: nothing cached is forgotten (the unannounced revocation below is
/// still not seen), and notices still arrive afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_channel_is_pinged_and_kept_not_reconnected() {
    let Some(mut a) = spawn_app_with(Backend::Postgres, |_| {}).await else { return };
    let mut b = spawn_replica(&a, |s| s.tokens.revocation_cache_ttl = NEVER_EXPIRES).await;
    let (user_id, access, _) = cached_on_both(&mut a, &mut b, "quiet@example.com").await;
    revoke_unannounced(&a, user_id).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(accepts(&mut b, &access).await, "a reconnection would have forgotten the cache");
    let (_, access, refresh) = cached_on_both(&mut a, &mut b, "quiet-after@example.com").await;
    a.client.logout(LogoutRequest { refresh_token: refresh }).await.unwrap();
    assert!(comes_to_refuse(&mut b, &access).await, "notices still arrive after the ping");
}
