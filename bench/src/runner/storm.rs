//! login-storm: ValidateToken's latency while logins keep every hashing worker
//! busy, against its latency at rest, on one server. A service that lets its
//! hashing threads take the cores from its runtime answers every cheap call
//! late while a login storm lasts.

use std::{sync::Arc, time::Duration};

use identity::grpc::proto;

use super::{Bench, LOGIN_USERS, Row, TOKENS, Users, cpu_line};
use crate::{
    callers::{LoginCaller, log_in},
    database::BenchDatabase,
    load::{self, Plan},
    measure::{CpuSnapshot, ms, percentile},
    options::{Backend, Scenario},
};

/// Concurrent callers logging in during the storm.
const STORM_CALLERS: usize = 64;
/// Validations offered per second, at rest and during the storm: a steady
/// load far below capacity, so that its latency is the server's, not a queue's.
const VALIDATIONS_PER_SECOND: u32 = 200;
/// Time the storm runs before validations are sampled, so that every hashing
/// worker is busy and the queue is full.
const WARM_UP: Duration = Duration::from_secs(1);

impl Bench {
    pub(super) async fn login_storm(
        &mut self,
        backend: Backend,
        database: Option<&BenchDatabase>,
        users: &mut Users,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::LoginStorm;
        let samples = self.options.requests(scenario);
        let label = format!("{}-{}", backend.name(), scenario.name());
        let server = self.start_server(database, &label, None).await?;
        let (channels, client) = server.client(STORM_CALLERS + 1).await?;
        let verified = self.verified_users(&client, database, users, LOGIN_USERS).await?;
        let sessions = log_in(&client, &verified, TOKENS).await?;
        let originals: Vec<String> = sessions.into_iter().map(|session| session.access_token).collect();
        let tokens = Arc::new(self.distinct_copies(&originals, 2 * samples)?);
        let validate = |offset: usize| {
            let (client, tokens) = (client.clone(), Arc::clone(&tokens));
            move |index: usize| {
                let (mut client, access_token) = (client.clone(), tokens[offset + index].clone());
                async move {
                    client.validate_token(proto::ValidateTokenRequest { access_token }).await?;
                    Ok(())
                }
            }
        };
        let at_rest = load::open_loop(VALIDATIONS_PER_SECOND, samples, validate(0)).await;

        let sampling = Duration::from_secs(1) * u32::try_from(samples).unwrap_or(u32::MAX) / VALIDATIONS_PER_SECOND;
        let plan = Plan { concurrency: STORM_CALLERS, requests: usize::MAX, time_limit: WARM_UP + sampling };
        let channels = Arc::new(channels);
        let storm = tokio::spawn(load::closed_loop(plan, move |slot| {
            let client = crate::callers::Client::new(channels[slot % channels.len()].clone());
            Box::new(LoginCaller { client, users: Arc::clone(&verified) })
        }));
        tokio::time::sleep(WARM_UP).await;
        let processes: Vec<_> =
            server.pid().map(|pid| ("server", pid)).into_iter().chain([("bench", std::process::id())]).collect();
        let before = CpuSnapshot::take(&processes);
        let during = load::open_loop(VALIDATIONS_PER_SECOND, samples, validate(samples)).await;
        let cpu = cpu_line(before, &processes);
        let logins = storm.await?;
        let figures = server.finish().await;

        let backend = self.backend_name(backend);
        println!(
            "== {} · {backend} · {VALIDATIONS_PER_SECOND} validations/s, {STORM_CALLERS} callers logging in ==",
            scenario.name()
        );
        let (rest_p99, storm_p99) = (percentile(&at_rest.latencies, 0.99), percentile(&during.latencies, 0.99));
        let ratio = storm_p99.as_secs_f64() / rest_p99.as_secs_f64().max(f64::MIN_POSITIVE);
        for (name, outcome) in [("at rest", &at_rest), ("during the storm", &during)] {
            println!(
                "  ValidateToken {name:<17} n={:<5} p50 {}, p99 {}, max {}; errors {}",
                outcome.calls(),
                ms(percentile(&outcome.latencies, 0.5)),
                ms(percentile(&outcome.latencies, 0.99)),
                ms(percentile(&outcome.latencies, 1.0)),
                outcome.errors_line()
            );
        }
        println!("  p99 during the storm / at rest: {ratio:.2}×");
        println!("  logins during the storm: {:.1}/s, errors {}{cpu}", logins.throughput(), logins.errors_line());
        if let Some(figures) = &figures {
            println!("  {}", figures.line("server"));
        }
        println!();
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: format!("{:.1} logins/s", logins.throughput()),
            versus: format!("ValidateToken p99 {ratio:.2}× its p99 at rest"),
            p50: format!("{} / {}", ms(percentile(&at_rest.latencies, 0.5)), ms(percentile(&during.latencies, 0.5))),
            p99: format!("{} / {}", ms(rest_p99), ms(storm_p99)),
            errors: format!("{}; logins {}", during.errors_line(), logins.errors_line()),
            cpu_per_call: "–".to_owned(),
            server: figures,
        });
        Ok(())
    }
}
