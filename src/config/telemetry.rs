//! Logs, metrics and traces: `IDENTITY_LOG_FORMAT`, `IDENTITY_METRICS_ADDR` and
//! the standard `OTEL_*` variables, for both binaries.

use std::net::SocketAddr;

use super::{ConfigError, Source, error};
use crate::telemetry::{LogFormat, OtlpSettings};

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// Where Prometheus scrapes `/metrics`; `None` turns the endpoint off.
    pub metrics_addr: Option<SocketAddr>,
    /// Where spans go; `None` when no OTLP endpoint is set.
    pub otlp: Option<OtlpSettings>,
}

/// What differs between the binaries: their names in traces, and their metrics
/// ports, so that both run side by side on their defaults.
#[derive(Debug, Clone, Copy)]
pub struct TelemetryDefaults {
    pub service_name: &'static str,
    pub metrics_addr: SocketAddr,
}

impl TelemetryDefaults {
    pub const SERVER: Self = Self { service_name: "identity-server", metrics_addr: SocketAddr::new(LOCALHOST, 9464) };
    pub const MAILER: Self = Self { service_name: "identity-mailer", metrics_addr: SocketAddr::new(LOCALHOST, 9465) };
}

const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// # Errors
/// The first invalid variable.
pub fn telemetry<F: Fn(&str) -> Option<String>>(
    env: &Source<F>,
    defaults: TelemetryDefaults,
) -> Result<TelemetrySettings, ConfigError> {
    Ok(TelemetrySettings {
        log_format: log_format(env)?,
        metrics_addr: metrics_addr(env, defaults.metrics_addr)?,
        otlp: otlp(env, defaults.service_name),
    })
}

/// `IDENTITY_LOG_FORMAT`: `json` (the default) or `pretty`.
fn log_format<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<LogFormat, ConfigError> {
    match env.string("IDENTITY_LOG_FORMAT", "json").as_str() {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        other => Err(error("IDENTITY_LOG_FORMAT", format!("{other:?} is neither json nor pretty"))),
    }
}

/// `IDENTITY_METRICS_ADDR`: an address, or `off`.
fn metrics_addr<F: Fn(&str) -> Option<String>>(
    env: &Source<F>,
    default: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    match env.get("IDENTITY_METRICS_ADDR").map(|v| v.trim().to_owned()) {
        None => Ok(Some(default)),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| error("IDENTITY_METRICS_ADDR", format!("{v:?} is neither host:port nor off"))),
    }
}

/// The standard OpenTelemetry variables: the traces endpoint if set (even
/// blank), else the general one; `None` when that is unset or blank.
fn otlp<F: Fn(&str) -> Option<String>>(env: &Source<F>, default_service_name: &str) -> Option<OtlpSettings> {
    let endpoint = (env.0)("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| (env.0)("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|e| !e.trim().is_empty())?;
    let service_name = env.get("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service_name.to_owned());
    Some(OtlpSettings { endpoint, service_name })
}
