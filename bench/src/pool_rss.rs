//! Peak memory of 64 concurrent hashes at the production parameters, through
//! the hashing pool and through per-call allocation (the design the pool
//! replaced: a semaphore in front of `spawn_blocking`), each measured in a
//! process of its own so that the peak belongs to that design alone.

use std::{sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use argon2::{Algorithm, Argon2, PasswordHasher as _, Version};
use identity::{
    domain::{NewPassword, PlaintextPassword, ports::PasswordHasher},
    infrastructure::{Argon2Hasher, Argon2Settings},
};
use tokio::sync::Semaphore;

use crate::{
    measure::{Memory, memory_of, mib, ms},
    processes::Process,
};

const CONCURRENT_HASHES: usize = 64;
const WORKERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    Pool,
    PerCall,
}

impl Design {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pool" => Some(Self::Pool),
            "per-call" => Some(Self::PerCall),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Pool => "pool",
            Self::PerCall => "per-call",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Pool => "hashing pool (2 workers, memory owned per worker)",
            Self::PerCall => "per-call allocation (semaphore of 2 + spawn_blocking)",
        }
    }
}

fn settings() -> Argon2Settings {
    Argon2Settings { max_concurrent: WORKERS, queue_timeout: Duration::from_secs(600), ..Argon2Settings::recommended() }
}

/// The child side: hashes, then prints `<before KiB> <peak KiB> <after KiB> <elapsed ms>`.
///
/// # Errors
/// Hashing failed.
pub async fn measure_in_this_process(design: Design) -> anyhow::Result<()> {
    let before = memory_of(std::process::id())?;
    let started = Instant::now();
    match design {
        Design::Pool => {
            let hasher = Arc::new(Argon2Hasher::new(settings())?);
            let password = NewPassword::trusted(PlaintextPassword::parse("plum-orbit-canyon-47!".to_owned())?);
            let tasks: Vec<_> = (0..CONCURRENT_HASHES)
                .map(|_| {
                    let (hasher, password) = (Arc::clone(&hasher), password.clone());
                    tokio::spawn(async move { hasher.hash(&password).await })
                })
                .collect();
            for task in tasks {
                task.await?.map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
            }
        }
        Design::PerCall => {
            let permits = Arc::new(Semaphore::new(WORKERS));
            let params = settings().params()?;
            let tasks: Vec<_> = (0..CONCURRENT_HASHES)
                .map(|_| {
                    let (permits, params) = (Arc::clone(&permits), params.clone());
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await?;
                        tokio::task::spawn_blocking(move || {
                            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                                .hash_password(b"plum-orbit-canyon-47!")
                                .map(|hash| hash.to_string())
                                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
                        })
                        .await?
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
        }
    }
    let elapsed = started.elapsed();
    let after = memory_of(std::process::id())?;
    println!("{} {} {} {}", before.rss_kib, after.peak_kib, after.rss_kib, elapsed.as_millis());
    Ok(())
}

/// The parent side: one child per design, their figures printed.
///
/// # Errors
/// A child failed or printed something unexpected.
pub async fn report(dir: &std::path::Path) -> anyhow::Result<()> {
    println!("== hashing memory: {CONCURRENT_HASHES} concurrent hashes, m=19456 KiB t=2 p=1, {WORKERS} workers ==");
    let me = std::env::current_exe().context("locating the bench executable")?;
    for design in [Design::Pool, Design::PerCall] {
        let log = dir.join(format!("pool-rss-{}.log", design.name()));
        let mut child = Process::spawn("pool-rss", &me, &["__pool-rss", design.name()], &[], log.clone())?;
        child.wait_exit().await?;
        let output = std::fs::read_to_string(&log)?;
        let figures: Vec<u64> = output.split_whitespace().filter_map(|word| word.parse().ok()).collect();
        let [before, peak, after, elapsed_ms] = figures[..] else {
            anyhow::bail!("unexpected output from the pool-rss child: {output:?}");
        };
        let memory = Memory { rss_kib: after, peak_kib: peak };
        println!(
            "  {:<55} RSS before {:>9}, peak (VmHWM) {:>9}, after {:>9}, {} for all",
            design.description(),
            mib(before),
            mib(memory.peak_kib),
            mib(memory.rss_kib),
            ms(Duration::from_millis(elapsed_ms)),
        );
    }
    println!();
    Ok(())
}
