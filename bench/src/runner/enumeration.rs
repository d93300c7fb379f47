//! login-enumeration: whether an unknown email and a wrong password take
//! measurably different times.

use std::time::Instant;

use identity::grpc::proto;

use super::{Bench, Row, Users, cpu_line};
use crate::{
    callers::WRONG_PASSWORD,
    database::BenchDatabase,
    load::{self, Outcome},
    measure::{CpuSnapshot, ms, percent, percentile},
    options::{Backend, Scenario},
};

impl Bench {
    /// Unknown email vs known email with a wrong password, one call at a time:
    /// if the two take measurably different times, login enumerates accounts.
    pub(super) async fn login_enumeration(
        &mut self,
        backend: Backend,
        database: Option<&BenchDatabase>,
        users: &mut Users,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::LoginEnumeration;
        let samples = self.options.requests(scenario);
        let label = format!("{}-{}", backend.name(), scenario.name());
        let server = self.start_server(database, &label, None).await?;
        let (_, mut client) = server.client(1).await?;
        let verified = self.verified_users(&client, database, users, 1).await?;
        let known = verified[0].clone();
        let unknown = |index: usize| format!("nobody-{}-{index}@example.com", self.run_id);
        // A few calls first, so that both workers have their memory before timing starts.
        for index in 0..6 {
            let email = if index % 2 == 0 { unknown(index) } else { known.clone() };
            let _ =
                client.login(proto::LoginRequest { email, password: WRONG_PASSWORD.to_owned(), client: None }).await;
        }
        let (mut unknown_times, mut known_times, mut unexpected) = (Vec::new(), Vec::new(), Outcome::default());
        let processes: Vec<_> =
            server.pid().map(|pid| ("server", pid)).into_iter().chain([("bench", std::process::id())]).collect();
        let before = CpuSnapshot::take(&processes);
        let stop_at = Instant::now() + self.options.duration_limit;
        for index in 0..samples {
            if Instant::now() >= stop_at {
                break;
            }
            let is_unknown = index % 2 == 0;
            let email = if is_unknown { unknown(index) } else { known.clone() };
            let sent = Instant::now();
            let answer =
                client.login(proto::LoginRequest { email, password: WRONG_PASSWORD.to_owned(), client: None }).await;
            let took = sent.elapsed();
            match answer {
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    if is_unknown {
                        unknown_times.push(took)
                    } else {
                        known_times.push(took)
                    }
                }
                Err(status) => *unexpected.errors.entry(load::code_name(&status)).or_default() += 1,
                Ok(_) => *unexpected.errors.entry("OK (a wrong password was accepted!)".to_owned()).or_default() += 1,
            }
        }
        let cpu = cpu_line(before, &processes);
        unknown_times.sort_unstable();
        known_times.sort_unstable();
        let figures = server.finish().await;
        let backend = self.backend_name(backend);
        println!("== {} · {backend} · one call at a time ==", scenario.name());
        let (unknown_p50, known_p50) = (percentile(&unknown_times, 0.5), percentile(&known_times, 0.5));
        for (name, times) in [("unknown email", &unknown_times), ("known email, wrong password", &known_times)] {
            println!(
                "  {name:<28} n={:<4} median {}, p90 {}",
                times.len(),
                ms(percentile(times, 0.5)),
                ms(percentile(times, 0.9))
            );
        }
        let difference = known_p50.as_secs_f64() - unknown_p50.as_secs_f64();
        let relative = percent(difference.abs(), unknown_p50.as_secs_f64());
        println!(
            "  median difference (known − unknown): {:+.2} ms ({relative} of the unknown-email median); p90 difference {:+.2} ms",
            difference * 1000.0,
            (percentile(&known_times, 0.9).as_secs_f64() - percentile(&unknown_times, 0.9).as_secs_f64()) * 1000.0
        );
        println!("  unexpected answers: {}{cpu}", unexpected.errors_line());
        if let Some(figures) = &figures {
            println!("  {}", figures.line("server"));
        }
        println!();
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: "–".to_owned(),
            versus: format!("median Δ {:+.2} ms ({relative})", difference * 1000.0),
            p50: format!("{} / {}", ms(unknown_p50), ms(known_p50)),
            p99: format!("{} / {}", ms(percentile(&unknown_times, 0.99)), ms(percentile(&known_times, 0.99))),
            errors: unexpected.errors_line(),
            cpu_per_call: "–".to_owned(),
            server: figures,
        });
        Ok(())
    }
}
