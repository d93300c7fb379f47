//! signup-to-email: the server publishing to RabbitMQ, the real mailer, and
//! the SendGrid stand-in, with the run's own exchange and queues.

use anyhow::Context;
use identity::infrastructure::rabbitmq::MailerTopology;

use super::{Bench, Row, SETTLE, cpu_line};
use testkit::free_port;

use crate::{
    database::BenchDatabase,
    email_flow,
    email_sink::EmailSink,
    measure::{CpuSnapshot, mib, ms, percentile},
    options::{Backend, Scenario},
    processes::Process,
};

impl Bench {
    pub(super) async fn signup_to_email(
        &mut self,
        backend: Backend,
        database: Option<&BenchDatabase>,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::SignUpToEmail;
        if self.options.target.is_some() {
            println!("== {} ==\n  skipped: it starts its own server and mailer (not with --target)\n", scenario.name());
            return Ok(());
        }
        if let Err(error) = email_flow::broker_reachable(&self.options.amqp_url).await {
            println!(
                "== {} ==\n  skipped: RabbitMQ unreachable at {}: {error}\n",
                scenario.name(),
                self.options.amqp_url
            );
            return Ok(());
        }
        let database = database.context("no database for the server")?;
        let topology = email_flow::topology(&self.run_id, backend.name());
        let outcome = self.signup_to_email_with(backend, database, &topology).await;
        email_flow::delete_topology(&self.options.amqp_url, &topology).await;
        outcome
    }

    async fn signup_to_email_with(
        &mut self,
        backend: Backend,
        database: &BenchDatabase,
        topology: &MailerTopology,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::SignUpToEmail;
        let sink = EmailSink::start().await?;
        let label = format!("{}-{}", backend.name(), scenario.name());
        let server = self.start_server(Some(database), &label, Some(topology)).await?;
        let health_port = free_port().context("finding a free port")?;
        let env: Vec<(String, String)> = [
            ("IDENTITY_AMQP_URL", self.options.amqp_url.clone()),
            ("IDENTITY_AMQP_EXCHANGE", topology.exchange.clone()),
            ("IDENTITY_MAILER_QUEUE", topology.queue.clone()),
            ("IDENTITY_DATABASE_URL", database.url()),
            ("IDENTITY_AUTO_MIGRATE", "false".to_owned()),
            ("IDENTITY_EMAIL_PROVIDER", "sendgrid".to_owned()),
            ("SENDGRID_API_KEY", "SG.bench-not-a-key".to_owned()),
            ("SENDGRID_BASE_URL", format!("http://127.0.0.1:{}", sink.port)),
            ("IDENTITY_EMAIL_FROM", "no-reply@example.com".to_owned()),
            ("IDENTITY_MAILER_HEALTH_ADDR", format!("127.0.0.1:{health_port}")),
            ("IDENTITY_METRICS_ADDR", format!("127.0.0.1:{}", free_port().context("finding a free port")?)),
            ("IDENTITY_LOG_FORMAT", "json".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let log = self.dir.join(format!("mailer-{label}.log"));
        let (_, mailer) = self.binaries.as_ref().context("identity-mailer was not found")?;
        let mut mailer = Process::spawn("identity-mailer", mailer, &[], &env, log)?;
        let mailer_start = mailer.wait_serving(health_port, "").await?;
        tokio::time::sleep(SETTLE).await;
        let mailer_idle = mailer.memory()?;

        let (_, client) = server.client(16).await?;
        let series = self.next_series();
        let rate = self.options.signup_rate;
        let requests = self.options.requests(scenario);
        let processes: Vec<_> = server
            .pid()
            .map(|pid| ("server", pid))
            .into_iter()
            .chain([("mailer", mailer.pid()), ("bench", std::process::id())])
            .collect();
        let before = CpuSnapshot::take(&processes);
        let result = email_flow::run(&client, &sink, &series, rate, requests, self.options.duration_limit).await;
        let cpu = cpu_line(before, &processes);
        let mailer_end = mailer.memory()?;
        mailer.stop().await;
        let figures = server.finish().await;

        let backend = self.backend_name(backend);
        let sign_ups = &result.sign_ups;
        println!("== {} · {backend} · {rate} sign-ups/s offered ==", scenario.name());
        println!(
            "  {} sign-ups in {:.2} s ({:.1} ok/s); sign-up latency p50 {}, p99 {}; errors: {}",
            sign_ups.calls(),
            sign_ups.elapsed.as_secs_f64(),
            sign_ups.throughput(),
            ms(percentile(&sign_ups.latencies, 0.5)),
            ms(percentile(&sign_ups.latencies, 0.99)),
            sign_ups.errors_line()
        );
        println!(
            "  sign-up OK → email at the SendGrid stand-in: p50 {}, p90 {}, p99 {}, max {}; {} of {} emails missing after {}s",
            ms(result.delay(0.5)),
            ms(result.delay(0.9)),
            ms(result.delay(0.99)),
            ms(result.delay(1.0)),
            result.missing,
            result.delays.len() + result.missing,
            email_flow::DRAIN_LIMIT.as_secs()
        );
        if !cpu.is_empty() {
            println!("  {}", cpu.trim_start_matches("; "));
        }
        if let Some(figures) = &figures {
            println!("  {}", figures.line("server"));
        }
        println!(
            "  mailer: SERVING {} after start; RSS idle {}, after the run {}, peak (VmHWM) {}",
            ms(mailer_start),
            mib(mailer_idle.rss_kib),
            mib(mailer_end.rss_kib),
            mib(mailer_end.peak_kib)
        );
        println!();
        self.notes.push(format!(
            "mailer ({backend}): RSS idle {}, peak {}",
            mib(mailer_idle.rss_kib),
            mib(mailer_end.peak_kib)
        ));
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: format!("{:.1}", sign_ups.throughput()),
            versus: format!("email p99 {}", ms(result.delay(0.99))),
            p50: ms(percentile(&sign_ups.latencies, 0.5)),
            p99: ms(percentile(&sign_ups.latencies, 0.99)),
            errors: if result.missing > 0 {
                format!("{}; {} emails missing", sign_ups.errors_line(), result.missing)
            } else {
                sign_ups.errors_line()
            },
            cpu_per_call: "–".to_owned(),
            server: figures,
        });
        Ok(())
    }
}
