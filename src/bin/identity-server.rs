//! The identity gRPC server. Configuration comes from the environment; see the README.

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match identity::cli::run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line naming what is wrong, never a panic trace.
            eprintln!("identity-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}
