//! Revocations told to every replica through PostgreSQL `LISTEN/NOTIFY`.
//!
//! A notice names what changed (a user, sessions) and nothing else: the replica
//! that hears it reads that state from the database again. Notices are not
//! durable; when the channel drops, the listener reconnects, listens again and
//! only then has its replica forget everything cached before, so a notice lost
//! in between costs re-reads, never a revoked token honoured. A notice the
//! replica that made the change could not send (the database went away right
//! after the commit) is left to the revocation cache's time to live.

use std::{str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement,
    sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    domain::{
        UserId,
        ports::{RepositoryError, RevocationBroadcast, RevocationNotice, RevocationSubscriber},
    },
    infrastructure::sea_orm::classify,
};

/// The channel every replica of one database listens on.
pub const CHANNEL: &str = "identity_revocations";
/// How the listener's connection names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "identity-revocations";
/// Sessions named per notice: PostgreSQL refuses payloads of 8000 bytes and more.
const SESSIONS_PER_NOTICE: usize = 100;
/// Payloads this long or longer are not read (PostgreSQL sends none).
const MAX_PAYLOAD: usize = 8000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the channel may stay quiet before the listener checks it is alive,
/// and how long that check may take.
const IDLE_PING: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The payload, as JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sessions: Vec<Uuid>,
}

/// The payloads one notice is sent as.
fn payloads(notice: &RevocationNotice) -> Vec<String> {
    let user = notice.user.map(|id| id.as_uuid());
    let mut chunks: Vec<&[Uuid]> = notice.sessions.chunks(SESSIONS_PER_NOTICE).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, sessions)| {
            let wire = Wire { user: if i == 0 { user } else { None }, sessions: sessions.to_vec() };
            serde_json::to_string(&wire).expect("ids serialise")
        })
        .collect()
}

fn parse(payload: &str) -> Option<RevocationNotice> {
    if payload.len() >= MAX_PAYLOAD {
        return None;
    }
    let wire: Wire = serde_json::from_str(payload).ok()?;
    Some(RevocationNotice { user: wire.user.map(UserId::from_uuid), sessions: wire.sessions })
}

/// Sends notices over the server's connection pool.
pub struct PostgresRevocationBroadcast {
    db: DatabaseConnection,
}

impl PostgresRevocationBroadcast {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl RevocationBroadcast for PostgresRevocationBroadcast {
    async fn broadcast(&self, notice: &RevocationNotice) -> Result<(), RepositoryError> {
        for payload in payloads(notice) {
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [CHANNEL.into(), payload.into()],
            );
            self.db.execute_raw(statement).await.map_err(classify)?;
        }
        Ok(())
    }
}

async fn listen(options: &PgConnectOptions) -> Result<PgListener, sea_orm::sqlx::Error> {
    // A pool of one, with no idle or lifetime limit: the listener holds its
    // connection for as long as it lives.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends `hear`; the loop around it reconnects.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Listens, then hands every notice to `subscriber` until `stop`,
/// reconnecting (with backoff) whenever the channel drops. The first
/// connection is made before this returns, so that a server that answers is
/// normally one that hears; if it fails, the returned task keeps trying.
///
/// # Errors
/// The database URL cannot be parsed.
pub async fn listen_for_revocations(
    url: &SecretString,
    subscriber: Arc<dyn RevocationSubscriber>,
    stop: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let options = PgConnectOptions::from_str(url.expose_secret())?.application_name(APPLICATION_NAME);
    let first = connect(&options, &*subscriber).await;
    Ok(async move {
        let mut listener = first;
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(connected) = listener.take() else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                listener = tokio::select! {
                    () = stop.cancelled() => return,
                    connected = connect(&options, &*subscriber) => connected,
                };
                continue;
            };
            backoff = Duration::from_millis(100);
            tokio::select! {
                () = stop.cancelled() => return,
                () = hear(connected, &*subscriber) => {}
            }
        }
    })
}

/// Connects and listens; once listening, has the subscriber forget whatever
/// it cached before (notices of that time may have been missed).
async fn connect(options: &PgConnectOptions, subscriber: &dyn RevocationSubscriber) -> Option<PgListener> {
    match listen(options).await {
        Ok(listener) => {
            subscriber.missed_notices();
            tracing::info!(channel = CHANNEL, "listening for other replicas' revocations");
            Some(listener)
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot listen for revocations; the revocation cache's TTL applies meanwhile");
            None
        }
    }
}

/// Hands notices over until the channel drops. A channel quiet for
/// [`IDLE_PING`] is asked a `SELECT 1`: a connection that died without a word
/// (a half-open TCP connection: no keepalive is set) would otherwise keep the
/// listener waiting for ever while notices are lost.
async fn hear(mut listener: PgListener, subscriber: &dyn RevocationSubscriber) {
    loop {
        let Ok(received) = tokio::time::timeout(IDLE_PING, listener.try_recv()).await else {
            let ping = sea_orm::sqlx::query("SELECT 1").execute(&mut listener);
            match tokio::time::timeout(PING_TIMEOUT, ping).await {
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => tracing::warn!(error = %error, "the revocation channel failed a ping; reconnecting"),
                Err(_) => tracing::warn!("the revocation channel did not answer a ping; reconnecting"),
            }
            return;
        };
        match received {
            Ok(Some(notification)) => match parse(notification.payload()) {
                Some(notice) => subscriber.revoked(&notice),
                None => {
                    tracing::warn!("unreadable revocation notice: forgetting the whole cache instead");
                    subscriber.missed_notices();
                }
            },
            Ok(None) => {
                tracing::warn!("the revocation channel dropped; reconnecting");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, "the revocation channel failed; reconnecting");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_survives_its_payload() {
        let notice = RevocationNotice { user: Some(UserId::from_uuid(Uuid::now_v7())), sessions: vec![Uuid::now_v7()] };
        let sent = payloads(&notice);
        assert_eq!(sent.len(), 1);
        assert_eq!(parse(&sent[0]), Some(notice));
    }

    #[test]
    fn many_sessions_are_split_into_payloads_postgresql_accepts() {
        let sessions: Vec<Uuid> = (0..250).map(|_| Uuid::now_v7()).collect();
        let user = UserId::from_uuid(Uuid::now_v7());
        let sent = payloads(&RevocationNotice { user: Some(user), sessions: sessions.clone() });
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|payload| payload.len() < MAX_PAYLOAD), "every payload fits");
        let heard: Vec<RevocationNotice> = sent.iter().map(|p| parse(p).unwrap()).collect();
        assert_eq!(heard[0].user, Some(user), "the user is named once");
        assert!(heard[1..].iter().all(|n| n.user.is_none()));
        assert_eq!(heard.into_iter().flat_map(|n| n.sessions).collect::<Vec<_>>(), sessions);
    }

    #[test]
    fn oversized_or_malformed_payloads_are_not_read() {
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(&format!("{{\"sessions\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_PAYLOAD))), None);
    }
}
