//! rate-limit-check: what one rate-limit check adds to a call. VerifyEmail
//! with unknown tokens (one indexed read, one check per call) against servers
//! with the per-address limit off and on, alternately, so that the load the
//! machine carries from elsewhere drifts through both alike. With the limit
//! on, the budget is too large ever to be spent: every call pays the check and
//! none is refused. On PostgreSQL the check is the shared table's upsert; on
//! SQLite an in-memory bucket.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use identity::grpc::proto;

use super::{Bench, Row, cpu_per_call};
use crate::{
    callers::Client,
    database::BenchDatabase,
    load::{self, Caller, Plan},
    measure::{CpuSnapshot, ms, percentile},
    options::{Backend, Scenario},
};

/// A budget no run can spend.
const NEVER_SPENT: &str = "1000000000";

/// VerifyEmail with a well-formed token nobody issued: INVALID_ARGUMENT is
/// the answer expected, so it counts as a success.
struct UnknownTokenCaller {
    client: Client,
}

#[async_trait]
impl Caller for UnknownTokenCaller {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
        let token = format!("{index:0>42}A");
        match self.client.verify_email(proto::VerifyEmailRequest { token }).await {
            Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(()),
            Err(status) => Err(status),
            Ok(_) => Err(tonic::Status::internal("an unknown token verified an address")),
        }
    }
}

struct Run {
    limits_on: bool,
    throughput: f64,
    cpu_per_call: Option<Duration>,
    p50: Duration,
    p99: Duration,
    errors: String,
}

impl Bench {
    pub(super) async fn rate_limit_check(
        &mut self,
        backend: Backend,
        database: Option<&BenchDatabase>,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::RateLimitCheck;
        let concurrency = self.options.concurrency(scenario);
        let mut runs = Vec::new();
        for (round, limits_on) in [false, true, false, true].into_iter().enumerate() {
            let budget = if limits_on { NEVER_SPENT } else { "0" };
            let label = format!("{}-{}-{round}", backend.name(), scenario.name());
            let extra = [("IDENTITY_RATE_LIMIT_PER_ADDRESS", budget)];
            let server = self.start_server_env(database, &label, None, self.argon2, &extra).await?;
            let (channels, _) = server.client(concurrency).await?;
            let channels = Arc::new(channels);
            let plan = Plan {
                concurrency,
                requests: self.options.requests(scenario),
                time_limit: self.options.duration_limit,
            };
            let before = server.pid().and_then(|pid| CpuSnapshot::take(&[("server", pid)]));
            let outcome = load::closed_loop(plan, move |slot| {
                Box::new(UnknownTokenCaller { client: Client::new(channels[slot % channels.len()].clone()) })
                    as Box<dyn Caller>
            })
            .await;
            runs.push(Run {
                limits_on,
                throughput: outcome.throughput(),
                cpu_per_call: cpu_per_call(before.as_ref(), server.pid(), outcome.ok),
                p50: percentile(&outcome.latencies, 0.5),
                p99: percentile(&outcome.latencies, 0.99),
                errors: outcome.errors_line(),
            });
            server.finish().await;
        }
        let backend = self.backend_name(backend);
        println!("== {} · {backend} · {concurrency} callers, VerifyEmail with unknown tokens ==", scenario.name());
        for run in &runs {
            println!(
                "  limits {:<3} {:>8.0}/s  p50 {}  p99 {}  server CPU per call {}  errors {}",
                if run.limits_on { "on" } else { "off" },
                run.throughput,
                ms(run.p50),
                ms(run.p99),
                run.cpu_per_call.map_or_else(|| "–".to_owned(), |cpu| format!("{:.1} µs", micros(cpu))),
                run.errors
            );
        }
        let mean = |on: bool, figure: &dyn Fn(&Run) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter(|r| r.limits_on == on).filter_map(figure).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let cpu = |run: &Run| run.cpu_per_call.map(micros);
        let rate = |run: &Run| Some(run.throughput);
        let (cpu_off, cpu_on) = (mean(false, &cpu), mean(true, &cpu));
        let (rate_off, rate_on) = (mean(false, &rate).unwrap_or(0.0), mean(true, &rate).unwrap_or(0.0));
        let check = match (cpu_off, cpu_on) {
            (Some(off), Some(on)) => format!("{:.1} µs of server CPU per check", on - off),
            _ => "server CPU not measured".to_owned(),
        };
        let ratio = rate_on / rate_off.max(f64::MIN_POSITIVE);
        println!("  limits on / off: {ratio:.2} of the throughput; {check}");
        println!();
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: format!("{rate_on:.0}/s on, {rate_off:.0}/s off"),
            versus: format!("{ratio:.2}× the limits-off rate"),
            p50: runs.iter().map(|r| ms(r.p50)).collect::<Vec<_>>().join(" / "),
            p99: runs.iter().map(|r| ms(r.p99)).collect::<Vec<_>>().join(" / "),
            errors: runs.iter().map(|r| r.errors.clone()).collect::<Vec<_>>().join(" / "),
            cpu_per_call: check,
            server: None,
        });
        Ok(())
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
