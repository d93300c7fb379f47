//! Logs and traces, set up once by each binary (never by the library, so that
//! many test servers can share one process).
//!
//! Logs are JSON lines (or `pretty`): timestamp, level, target, message, the
//! event's fields and the fields of every span it happened in, flattened, so that
//! `request_id`, `user_id`, `rpc.method`, `trace_id` and `span_id` sit next to
//! the message. Traces go to an OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise no OpenTelemetry
//! layer is installed at all.

mod json_lines;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, prelude::*};

use self::json_lines::JsonLines;

/// `IDENTITY_LOG_FORMAT`: JSON lines (the default) or `pretty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Where spans go, when they go anywhere (`config::telemetry` reads the
/// standard `OTEL_*` variables into it).
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    pub service_name: String,
}

/// Keeps the trace pipeline alive; dropping it flushes the spans still queued.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber with `RUST_LOG` as the filter (default `info`).
/// A second call in one process keeps the first subscriber.
///
/// # Errors
/// The OTLP exporter cannot be built (an invalid endpoint).
pub fn init(format: LogFormat, otlp: Option<OtlpSettings>) -> anyhow::Result<TelemetryGuard> {
    let provider = match &otlp {
        Some(settings) => Some(tracer_provider(settings)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("identity")));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Json => Box::new(JsonLines::stdout()),
        LogFormat::Pretty => Box::new(tracing_subscriber::fmt::layer().pretty()),
    };
    let _ = tracing_subscriber::registry().with(filter).with(otel_layer).with(fmt_layer).try_init();
    if let Some(settings) = &otlp {
        tracing::info!(
            endpoint = settings.endpoint.as_str(),
            service = settings.service_name.as_str(),
            "exporting traces over OTLP"
        );
    }
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(settings: &OtlpSettings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the exporter: {e}"))?;
    // The sampler follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (read by the SDK).
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
        .build())
}
