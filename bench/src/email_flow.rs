//! signup-to-email: sign-ups offered at a fixed rate to a server publishing to
//! RabbitMQ, the real mailer delivering to the SendGrid stand-in; the figure is
//! the time from a sign-up's OK to its email reaching the stand-in.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use identity::infrastructure::rabbitmq::MailerTopology;
use lapin::{
    Connection, ConnectionProperties,
    options::{ExchangeDeleteOptions, QueueDeleteOptions},
};

use crate::{
    callers::{Client, EmailSeries, sign_up_request},
    email_sink::EmailSink,
    load::{Outcome, code_name},
    measure::percentile,
};

/// How long emails may still arrive after the last sign-up before the rest
/// count as missing.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// One run's exchange and queues, so that nothing else on the broker is touched.
pub fn topology(run_id: &str, backend: &str) -> MailerTopology {
    MailerTopology::new(
        &format!("identity.bench.{run_id}.{backend}"),
        &format!("identity.bench.{run_id}.{backend}.mailer"),
    )
}

/// Whether RabbitMQ answers at `url`.
pub async fn broker_reachable(url: &str) -> Result<(), String> {
    match Connection::connect(url, ConnectionProperties::default()).await {
        Ok(connection) => {
            let _ = connection.close(200, "probe".into()).await;
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Deletes the run's queues and exchange.
pub async fn delete_topology(url: &str, topology: &MailerTopology) {
    let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await else { return };
    if let Ok(channel) = connection.create_channel().await {
        for queue in [&topology.queue, &topology.retry_queue, &topology.dead_letter_queue] {
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        }
        let _ = channel.exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
    }
    let _ = connection.close(200, "bench finished".into()).await;
}

pub struct EmailFlowResult {
    /// The sign-up calls.
    pub sign_ups: Outcome,
    /// Sign-up OK → email at the stand-in, sorted.
    pub delays: Vec<Duration>,
    pub missing: usize,
}

impl EmailFlowResult {
    pub fn delay(&self, fraction: f64) -> Duration {
        percentile(&self.delays, fraction)
    }
}

/// Offers `requests` sign-ups at `rate` per second (open loop: a slow answer
/// does not slow the offer), then waits for their emails.
pub async fn run(
    client: &Client,
    sink: &EmailSink,
    series: &EmailSeries,
    rate: u32,
    requests: usize,
    time_limit: Duration,
) -> EmailFlowResult {
    let accepted: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut calls = Vec::with_capacity(requests);
    for index in 0..requests {
        ticks.tick().await;
        if started.elapsed() > time_limit {
            break;
        }
        let (mut client, email, accepted) = (client.clone(), series.email(index), Arc::clone(&accepted));
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client.sign_up(sign_up_request(email.clone())).await;
            let answered = Instant::now();
            if answer.is_ok() {
                accepted.lock().unwrap_or_else(PoisonError::into_inner).push((email, answered));
            }
            (answered - sent, answer.err())
        }));
    }
    let mut sign_ups = Outcome::default();
    for call in calls {
        let Ok((latency, error)) = call.await else { continue };
        sign_ups.latencies.push(latency);
        match error {
            None => sign_ups.ok += 1,
            Some(status) => *sign_ups.errors.entry(code_name(&status)).or_default() += 1,
        }
    }
    sign_ups.elapsed = started.elapsed();
    sign_ups.latencies.sort_unstable();

    let accepted = std::mem::take(&mut *accepted.lock().unwrap_or_else(PoisonError::into_inner));
    let drain_until = Instant::now() + DRAIN_LIMIT;
    while accepted.iter().any(|(email, _)| sink.arrival(email).is_none()) && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delays: Vec<Duration> = accepted
        .iter()
        .filter_map(|(email, answered)| Some(sink.arrival(email)?.saturating_duration_since(*answered)))
        .collect();
    delays.sort_unstable();
    let missing = accepted.len() - delays.len();
    EmailFlowResult { sign_ups, delays, missing }
}
