//! The ceilings: measured on their own for `all` and `ceilings`, and again
//! right before each scenario that is compared with one.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use identity::grpc::proto;

use super::{Bench, CEILING_SAMPLE, Ceiling, DISTINCT_TOKENS, Measured, SETTLE, cpu_line, cpu_per_call};
use testkit::free_port;

use crate::{
    callers::{Client, ValidateTokenCaller},
    ceilings::{self, BareKind, PUBLIC_KEY_VAR, TokenMint},
    load::{self, Caller, Plan},
    measure::{CpuSnapshot, mib, ms, percentile},
    processes::Process,
};

impl Bench {
    /// The ceilings section of `all` and `ceilings`: every ceiling, full samples.
    pub(super) async fn measure_ceilings(&mut self) -> anyhow::Result<()> {
        if !self.options.with_all_ceilings {
            return Ok(());
        }
        println!("== ceilings (same machine, same worker count) ==");
        let concurrency = self.options.concurrency.unwrap_or(16);
        for ceiling in [Ceiling::Argon2, Ceiling::Echo, Ceiling::Verify] {
            let measured = self.measure_ceiling(ceiling, concurrency, CEILING_SAMPLE).await?;
            println!("  {}", measured.line);
        }
        println!();
        Ok(())
    }

    /// Measures one ceiling for about `sample`.
    pub(super) async fn measure_ceiling(
        &self,
        ceiling: Ceiling,
        concurrency: usize,
        sample: Duration,
    ) -> anyhow::Result<Measured> {
        match ceiling {
            Ceiling::Argon2 => {
                let settings = self.argon2;
                let before = CpuSnapshot::take(&[("bench", std::process::id())]);
                let rate = tokio::task::spawn_blocking(move || ceilings::argon2_rate(settings, sample)).await??;
                let cpu = cpu_line(before, &[("bench", std::process::id())]);
                Ok(Measured {
                    value: rate,
                    cpu_per_call: None,
                    line: format!(
                        "raw argon2: {rate:.1} hashes/s ({} threads hashing in a loop, memory allocated once){cpu}",
                        settings.max_concurrent
                    ),
                })
            }
            Ceiling::Echo => self.measure_bare(BareKind::Echo, concurrency, sample).await,
            Ceiling::Verify => self.measure_bare(BareKind::Verify, concurrency, sample).await,
        }
    }

    /// Loads a bare server (a child process, like the real one) with `concurrency` callers.
    async fn measure_bare(&self, kind: BareKind, concurrency: usize, sample: Duration) -> anyhow::Result<Measured> {
        let mint = TokenMint::generate()?;
        let port = free_port().context("finding a free port")?;
        let me = std::env::current_exe().context("locating the bench executable")?;
        let env = [(PUBLIC_KEY_VAR.to_owned(), mint.public_paserk.clone())];
        let log = self.dir.join(format!("bare-{}.log", kind.name()));
        let mut process =
            Process::spawn("bare server", &me, &["__bare-server", kind.name(), &port.to_string()], &env, log)?;
        process.wait_serving(port, "").await?;
        tokio::time::sleep(SETTLE).await;
        let idle = process.memory()?;
        let channels = load::connect(&format!("http://127.0.0.1:{port}"), concurrency).await?;
        let plan = Plan { concurrency, requests: usize::MAX, time_limit: sample };
        let processes = [("bare server", process.pid()), ("bench", std::process::id())];
        let before = CpuSnapshot::take(&processes);
        let outcome = match kind {
            BareKind::Echo => {
                load::closed_loop(plan, |slot| {
                    Box::new(EchoCaller { client: Client::new(channels[slot % channels.len()].clone()) })
                })
                .await
            }
            BareKind::Verify => {
                // Each with its own jti, as the real server's are.
                let tokens = Arc::new((0..DISTINCT_TOKENS).map(|_| mint.sign()).collect::<anyhow::Result<Vec<_>>>()?);
                load::closed_loop(plan, |slot| {
                    let client = Client::new(channels[slot % channels.len()].clone());
                    Box::new(ValidateTokenCaller { client, tokens: Arc::clone(&tokens) })
                })
                .await
            }
        };
        let cpu_per_call = cpu_per_call(before.as_ref(), Some(process.pid()), outcome.ok);
        let cpu = cpu_line(before, &processes);
        let end = process.memory()?;
        process.stop().await;
        let name = match kind {
            BareKind::Echo => "bare echo server (GetPublicKeys answers a constant)",
            BareKind::Verify => "bare verifying server (ValidateToken = PASETO v4 verify + claims)",
        };
        let line = format!(
            "{name}: {:.0} calls/s, p50 {}, p99 {}, errors {}; RSS idle {}, peak {}{cpu}",
            outcome.throughput(),
            ms(percentile(&outcome.latencies, 0.5)),
            ms(percentile(&outcome.latencies, 0.99)),
            outcome.errors_line(),
            mib(idle.rss_kib),
            mib(end.peak_kib)
        );
        Ok(Measured { value: outcome.throughput(), cpu_per_call, line })
    }
}

/// `GetPublicKeys` against the bare echo server.
struct EchoCaller {
    client: Client,
}

#[async_trait::async_trait]
impl Caller for EchoCaller {
    async fn call(&mut self, _index: usize) -> Result<(), tonic::Status> {
        self.client.get_public_keys(proto::GetPublicKeysRequest {}).await?;
        Ok(())
    }
}
