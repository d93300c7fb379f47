//! Load generator and ceilings benchmark (see the README's Performance section).
//!
//! `identity-bench <scenario> [options]` starts `identity-server` (and for
//! signup-to-email `identity-mailer`) from next to itself, loads it, and
//! compares each figure with a ceiling measured on the same machine. The bench
//! also runs itself as a child process for the bare servers and the hashing
//! memory measurement (the `__` commands), so that every process it measures
//! is alone in its address space.

#[path = "bench/callers.rs"]
mod callers;
#[path = "bench/ceilings.rs"]
mod ceilings;
#[path = "bench/database.rs"]
mod database;
#[path = "bench/email_flow.rs"]
mod email_flow;
#[path = "bench/email_sink.rs"]
mod email_sink;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/options.rs"]
mod options;
#[path = "bench/pool_rss.rs"]
mod pool_rss;
#[path = "bench/processes.rs"]
mod processes;
#[path = "bench/runner.rs"]
mod runner;

use std::process::ExitCode;

use anyhow::Context;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The same runtime as identity-server's `#[tokio::main]`: one worker per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("identity-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("identity-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("__bare-server") => {
            let kind =
                args.get(1).and_then(|raw| ceilings::BareKind::parse(raw)).context("__bare-server echo|verify")?;
            let port = args.get(2).and_then(|raw| raw.parse().ok()).context("__bare-server <kind> <port>")?;
            ceilings::serve_bare(kind, port).await
        }
        Some("__pool-rss") => {
            let design =
                args.get(1).and_then(|raw| pool_rss::Design::parse(raw)).context("__pool-rss pool|per-call")?;
            pool_rss::measure_in_this_process(design).await
        }
        _ => runner::Bench::new(options::Options::parse(args)?)?.run().await,
    }
}
