//! Consumes email events from RabbitMQ and sends them. Configuration comes from
//! the environment; see the README.

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match identity::cli::run_mailer().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("identity-mailer: {error:#}");
            ExitCode::FAILURE
        }
    }
}
