//! Logs and traces, set up once by each binary (never by the library, so that
//! many test servers can share one process).
//!
//! Logs are JSON lines (or `pretty`): timestamp, level, target, message, the
//! event's fields and the fields of every span it happened in, flattened, so that
//! `request_id`, `user_id`, `rpc.method`, `trace_id` and `span_id` sit next to
//! the message. Traces go to an OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise no OpenTelemetry
//! layer is installed at all.

use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::JsonFields, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

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
        LogFormat::Json => {
            Box::new(tracing_subscriber::fmt::layer().fmt_fields(JsonFields::new()).event_format(FlatJson))
        }
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

/// One JSON object per line, with span fields flattened next to the event's.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(event.metadata().level().to_string()));
        line.insert("target".into(), Value::String(event.metadata().target().to_owned()));
        // Outer spans first, so that inner ones win on a name clash.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields.as_str())
                {
                    line.extend(map);
                }
            }
            if let Some(leaf) = ctx.event_scope().and_then(|mut scope| scope.next()) {
                line.insert("span".into(), Value::String(leaf.name().to_owned()));
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, once: "outer: inner: root cause".
        let mut chain = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        self.0.insert(field.name().into(), Value::from(chain));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}
