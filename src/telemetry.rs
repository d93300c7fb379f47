//! The tracing subscriber, built once by the binary (never by the library, so
//! that many test servers can share one process).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber: JSON lines by default, `pretty` for humans.
/// The filter comes from `RUST_LOG` (default `info`). Later calls are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false).with_target(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().pretty()).try_init(),
    };
    // Already installed (a second app in one test process): keep the first.
    let _ = result;
}
