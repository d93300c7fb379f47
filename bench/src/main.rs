//! Load generator and ceilings benchmark (see the README's Performance section).
//!
//! `identity-bench <scenario> [options]` starts `identity-server` (and for
//! signup-to-email `identity-mailer`) from next to itself, loads it, and
//! compares each figure with a ceiling measured on the same machine. The bench
//! also runs itself as a child process for the bare servers and the hashing
//! memory measurement (the `__` commands), so that every process it measures
//! is alone in its address space.

mod callers;
mod ceilings;
mod database;
mod email_flow;
mod email_sink;
mod load;
mod measure;
mod options;
mod pool_rss;
mod processes;
mod runner;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
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
    // The `__` commands are how the bench starts itself as a child; they are not
    // for people, so they stay out of the command line that `--help` describes.
    match args.get(1).map(String::as_str) {
        Some("__bare-server") => {
            let kind =
                args.get(2).and_then(|raw| ceilings::BareKind::parse(raw)).context("__bare-server echo|verify")?;
            let port = args.get(3).and_then(|raw| raw.parse().ok()).context("__bare-server <kind> <port>")?;
            ceilings::serve_bare(kind, port).await
        }
        Some("__pool-rss") => {
            let design =
                args.get(2).and_then(|raw| pool_rss::Design::parse(raw)).context("__pool-rss pool|per-call")?;
            pool_rss::measure_in_this_process(design).await
        }
        // Help and refusals print clap's text and exit as clap decides (0 for --help).
        _ => runner::Bench::new(options::Cli::parse_from(args).into())?.run().await,
    }
}
