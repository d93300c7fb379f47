//! A closed-loop load generator: N callers, each sending its next request as
//! soon as the previous one is answered, until the request count or the time
//! limit is reached.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use async_trait::async_trait;
use tonic::transport::Channel;

/// No single call may hang a run: past this it counts as a client timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams per HTTP/2 connection the generator aims for; servers commonly cap
/// concurrent streams at 100–200 per connection.
const STREAMS_PER_CONNECTION: usize = 100;

/// One caller's way of making request number `index`.
#[async_trait]
pub trait Caller: Send + 'static {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status>;
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub concurrency: usize,
    pub requests: usize,
    pub time_limit: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub elapsed: Duration,
    /// Every answered call, successful or not, sorted.
    pub latencies: Vec<Duration>,
    pub ok: u64,
    /// Failed calls by gRPC code name (`client timeout` for calls cut off here).
    pub errors: BTreeMap<String, u64>,
}

impl Outcome {
    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() { 0.0 } else { self.ok as f64 / self.elapsed.as_secs_f64() }
    }

    pub fn calls(&self) -> usize {
        self.latencies.len()
    }

    pub fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.ok += other.ok;
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
    }

    pub fn errors_line(&self) -> String {
        if self.errors.is_empty() {
            return "none".to_owned();
        }
        self.errors.iter().map(|(code, count)| format!("{code} {count}")).collect::<Vec<_>>().join(", ")
    }
}

pub fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// Enough HTTP/2 connections to `target` for `concurrency` callers.
///
/// # Errors
/// The server does not answer.
pub async fn connect(target: &str, concurrency: usize) -> anyhow::Result<Vec<Channel>> {
    let count = concurrency.div_ceil(STREAMS_PER_CONNECTION).max(1);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Channel::from_shared(target.to_owned())
            .with_context(|| format!("{target} is not a URL"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {target}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Runs `plan` with one caller per concurrent slot, made by `make_caller(slot)`.
pub async fn closed_loop(plan: Plan, mut make_caller: impl FnMut(usize) -> Box<dyn Caller>) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = started + plan.time_limit;
    let tasks: Vec<_> = (0..plan.concurrency.min(plan.requests))
        .map(|slot| {
            let mut caller = make_caller(slot);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= plan.requests || Instant::now() >= stop_at {
                        return outcome;
                    }
                    let sent = Instant::now();
                    let answer = tokio::time::timeout(CALL_TIMEOUT, caller.call(index)).await;
                    outcome.latencies.push(sent.elapsed());
                    match answer {
                        Ok(Ok(())) => outcome.ok += 1,
                        Ok(Err(status)) => *outcome.errors.entry(code_name(&status)).or_default() += 1,
                        Err(_) => *outcome.errors.entry("client timeout".to_owned()).or_default() += 1,
                    }
                }
            })
        })
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(_) => *total.errors.entry("caller panicked".to_owned()).or_default() += 1,
        }
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

/// Open loop: `count` calls at `per_second`, each sent on schedule whether or
/// not the earlier ones were answered, so that a slow server shows as latency
/// (measured from the scheduled send) rather than as fewer calls.
pub async fn open_loop<C, F>(per_second: u32, count: usize, call: C) -> Outcome
where
    C: Fn(usize) -> F,
    F: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let started = Instant::now();
    let period = Duration::from_secs(1) / per_second.max(1);
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..count {
        let scheduled = started + period * u32::try_from(index).unwrap_or(u32::MAX);
        tokio::time::sleep_until(scheduled.into()).await;
        let answer = call(index);
        calls.spawn(async move {
            let answer = tokio::time::timeout(CALL_TIMEOUT, answer).await;
            (scheduled.elapsed(), answer)
        });
    }
    let mut total = Outcome::default();
    while let Some(joined) = calls.join_next().await {
        let Ok((took, answer)) = joined else {
            *total.errors.entry("caller panicked".to_owned()).or_default() += 1;
            continue;
        };
        total.latencies.push(took);
        match answer {
            Ok(Ok(())) => total.ok += 1,
            Ok(Err(status)) => *total.errors.entry(code_name(&status)).or_default() += 1,
            Err(_) => *total.errors.entry("client timeout".to_owned()).or_default() += 1,
        }
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FailingEveryThird;

    #[async_trait]
    impl Caller for FailingEveryThird {
        async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
            if index % 3 == 2 { Err(tonic::Status::unavailable("down")) } else { Ok(()) }
        }
    }

    #[tokio::test]
    async fn every_request_is_made_once_and_failures_are_counted_by_code() {
        let plan = Plan { concurrency: 4, requests: 30, time_limit: Duration::from_secs(60) };
        let outcome = closed_loop(plan, |_| Box::new(FailingEveryThird)).await;
        assert_eq!((outcome.calls(), outcome.ok), (30, 20));
        assert_eq!(outcome.errors.get("Unavailable"), Some(&10));
        assert!(outcome.latencies.is_sorted());
    }

    #[tokio::test]
    async fn an_open_loop_makes_every_call_and_counts_failures_by_code() {
        let outcome = open_loop(1_000, 30, |index| async move {
            if index % 3 == 2 { Err(tonic::Status::unavailable("down")) } else { Ok(()) }
        })
        .await;
        assert_eq!((outcome.calls(), outcome.ok), (30, 20));
        assert_eq!(outcome.errors.get("Unavailable"), Some(&10));
    }

    #[tokio::test]
    async fn no_request_starts_after_the_time_limit() {
        let plan = Plan { concurrency: 2, requests: 1_000, time_limit: Duration::ZERO };
        let outcome = closed_loop(plan, |_| Box::new(FailingEveryThird)).await;
        assert_eq!(outcome.calls(), 0);
    }
}
