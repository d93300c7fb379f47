//! `IDENTITY_REFRESH_REUSE_GRACE`: a refresh token presented again soon after
//! it was rotated is a retry (a lost answer, two tabs refreshing at once) and
//! gets a new pair in the same family; later, or once the family was revoked,
//! it is theft as before.

use std::{collections::HashSet, time::Duration};

use identity::grpc::proto::{
    ListSessionsRequest, LogoutAllRequest, RefreshSessionRequest, RefreshSessionResponse, RevokeSessionRequest,
};
use tonic::{Code, Status};

use testkit::on_both_databases;

use crate::helpers::{STRONG_PASSWORD, TestApp, is_valid, logged_in, login_tokens, spawn_app, with_bearer};

on_both_databases!(
    builder = spawn_app;
    a_token_presented_again_within_the_grace_gets_a_new_pair_and_revokes_nothing,
    a_token_presented_again_after_the_grace_revokes_its_family,
    a_retry_after_the_session_was_revoked_is_refused,
    a_retry_after_logout_all_is_refused,
    concurrent_refreshes_with_one_token_all_succeed_in_one_family,
    retries_racing_a_revocation_never_outlive_it,
);

/// The default grace (10 s), and a moment either side of it.
const WITHIN_THE_GRACE: Duration = Duration::from_secs(9);
const PAST_THE_GRACE: Duration = Duration::from_secs(11);

async fn refresh(app: &mut TestApp, token: &str) -> Result<RefreshSessionResponse, Status> {
    let request = RefreshSessionRequest { refresh_token: token.into(), client: None };
    app.client.refresh_session(request).await.map(tonic::Response::into_inner)
}

/// The ids of the caller's live sessions (one per login).
async fn session_ids(app: &mut TestApp, access: &str) -> Vec<String> {
    let listed = app.client.list_sessions(with_bearer(access, ListSessionsRequest {})).await.unwrap();
    listed.into_inner().sessions.into_iter().map(|session| session.id).collect()
}

async fn a_token_presented_again_within_the_grace_gets_a_new_pair_and_revokes_nothing(mut app: TestApp) {
    let (user_id, _, first) = logged_in(&mut app, "ada@example.com").await;
    let rotated = refresh(&mut app, &first).await.unwrap();
    app.clock.advance(WITHIN_THE_GRACE);

    let retried = refresh(&mut app, &first).await.expect("a retry within the grace is answered");
    assert_eq!(retried.user.as_ref().unwrap().id, user_id);
    assert_ne!(retried.refresh_token, rotated.refresh_token, "a pair of its own");
    assert_ne!(retried.refresh_token, first);
    // Both answers stand: the first rotation's and the retry's.
    for pair in [&rotated, &retried] {
        assert!(is_valid(&mut app, &pair.access_token).await);
    }
    let (rotated_again, retried_again) =
        (refresh(&mut app, &rotated.refresh_token).await, refresh(&mut app, &retried.refresh_token).await);
    rotated_again.expect("the first rotation's refresh token still works");
    let retried_again = retried_again.expect("the retry's refresh token works");
    // Still one login.
    assert_eq!(session_ids(&mut app, &retried_again.access_token).await.len(), 1);
}

async fn a_token_presented_again_after_the_grace_revokes_its_family(mut app: TestApp) {
    let (_, _, first) = logged_in(&mut app, "ada@example.com").await;
    let rotated = refresh(&mut app, &first).await.unwrap();
    let retried = refresh(&mut app, &first).await.unwrap();
    app.clock.advance(PAST_THE_GRACE);

    assert_eq!(refresh(&mut app, &first).await.unwrap_err().code(), Code::Unauthenticated);
    // Everything the token ever gave is gone, the retry's pair included.
    for pair in [&rotated, &retried] {
        assert_eq!(refresh(&mut app, &pair.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
        assert!(!is_valid(&mut app, &pair.access_token).await);
    }
}

async fn a_retry_after_the_session_was_revoked_is_refused(mut app: TestApp) {
    let (_, owner_access, _) = logged_in(&mut app, "ada@example.com").await;
    let (_, stolen) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    let rotated = refresh(&mut app, &stolen).await.unwrap();
    let listed = app.client.list_sessions(with_bearer(&owner_access, ListSessionsRequest {})).await.unwrap();
    let other = listed.into_inner().sessions.into_iter().find(|session| !session.current).unwrap();
    let revoke = with_bearer(&owner_access, RevokeSessionRequest { session_id: other.id });
    app.client.revoke_session(revoke).await.unwrap();

    // Within the grace, but the family is revoked: no new pair, nothing revived.
    assert_eq!(refresh(&mut app, &stolen).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(refresh(&mut app, &rotated.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
    assert!(!is_valid(&mut app, &rotated.access_token).await);
    assert!(is_valid(&mut app, &owner_access).await, "the owner's own session goes on");
}

async fn a_retry_after_logout_all_is_refused(mut app: TestApp) {
    let (_, access, first) = logged_in(&mut app, "ada@example.com").await;
    let rotated = refresh(&mut app, &first).await.unwrap();
    app.clock.advance(Duration::from_millis(5));
    app.client.logout_all(with_bearer(&access, LogoutAllRequest {})).await.unwrap();

    assert_eq!(refresh(&mut app, &first).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(refresh(&mut app, &rotated.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
}

async fn concurrent_refreshes_with_one_token_all_succeed_in_one_family(mut app: TestApp) {
    let (_, owner_access, _) = logged_in(&mut app, "ada@example.com").await;
    let (_, token) = login_tokens(&mut app, "ada@example.com", STRONG_PASSWORD).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut client = app.client.clone();
            let request = RefreshSessionRequest { refresh_token: token.clone(), client: None };
            tokio::spawn(async move { client.refresh_session(request).await })
        })
        .collect();
    let mut pairs = Vec::new();
    for call in calls {
        pairs.push(call.await.unwrap().expect("every concurrent refresh within the grace succeeds").into_inner());
    }
    let distinct: HashSet<&str> = pairs.iter().map(|pair| pair.refresh_token.as_str()).collect();
    assert_eq!(distinct.len(), pairs.len(), "each call got a refresh token of its own");

    // One family: the owner sees two logins (theirs and this one), and ending
    // this one ends every pair the calls got.
    let listed = app.client.list_sessions(with_bearer(&owner_access, ListSessionsRequest {})).await.unwrap();
    let sessions = listed.into_inner().sessions;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let other = sessions.into_iter().find(|session| !session.current).unwrap();
    app.client.revoke_session(with_bearer(&owner_access, RevokeSessionRequest { session_id: other.id })).await.unwrap();
    for pair in &pairs {
        assert!(!is_valid(&mut app, &pair.access_token).await, "an access token of the family still validates");
        assert_eq!(refresh(&mut app, &pair.refresh_token).await.unwrap_err().code(), Code::Unauthenticated);
    }
}

/// Retries of one spent token fired beside the owner's RevokeSession: once
/// the revocation returned, nothing any retry got works, and a retry after
/// it is refused.
async fn retries_racing_a_revocation_never_outlive_it(mut app: TestApp) {
    for trial in 0..6 {
        let email = format!("retry{trial}@example.com");
        let (_, owner_access, _) = logged_in(&mut app, &email).await;
        let (_, stolen) = login_tokens(&mut app, &email, STRONG_PASSWORD).await;
        refresh(&mut app, &stolen).await.unwrap();
        let listed = app.client.list_sessions(with_bearer(&owner_access, ListSessionsRequest {})).await.unwrap();
        let target = listed.into_inner().sessions.into_iter().find(|session| !session.current).unwrap();

        let retries: Vec<_> = (0..8)
            .map(|_| {
                let mut client = app.client.clone();
                let stolen = stolen.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for _ in 0..20 {
                        let request = RefreshSessionRequest { refresh_token: stolen.clone(), client: None };
                        match client.refresh_session(request).await {
                            Ok(pair) => got.push(pair.into_inner()),
                            Err(status) => {
                                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                                break;
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(trial * 2)).await;
        let revoke = with_bearer(&owner_access, RevokeSessionRequest { session_id: target.id });
        app.client.revoke_session(revoke).await.unwrap();

        let mut loot = Vec::new();
        for retry in retries {
            loot.extend(retry.await.unwrap());
        }
        assert_eq!(refresh(&mut app, &stolen).await.unwrap_err().code(), Code::Unauthenticated, "trial {trial}");
        for pair in &loot {
            assert!(!is_valid(&mut app, &pair.access_token).await, "trial {trial}: a retry's access token validates");
            let again = refresh(&mut app, &pair.refresh_token).await;
            assert_eq!(again.unwrap_err().code(), Code::Unauthenticated, "trial {trial}: a retry's pair outlived it");
        }
    }
}
