//! W3C trace context (`traceparent`, `tracestate`) in and out of carriers: gRPC
//! metadata, the outbox row, AMQP headers. When no OpenTelemetry layer is
//! installed the spans carry no context and all of this does nothing.

use std::collections::BTreeMap;

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A carrier as a plain map (header name → value).
pub type Carrier = BTreeMap<String, String>;

struct MapInjector<'a>(&'a mut Carrier);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a Carrier);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span's context as a carrier; `None` when it has none worth carrying.
pub fn inject(span: &Span) -> Option<Carrier> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::new();
    TraceContextPropagator::new().inject_context(&context, &mut MapInjector(&mut carrier));
    Some(carrier)
}

/// Makes `span` a child of the context in `carrier`, if it holds one.
pub fn continue_from(span: &Span, carrier: &Carrier) {
    let context = TraceContextPropagator::new().extract(&MapExtractor(carrier));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the caller's trace, from gRPC (HTTP/2) headers.
pub fn continue_from_headers(span: &Span, headers: &http::HeaderMap) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The span's trace and span ids, for joining logs to traces.
pub fn ids(span: &Span) -> Option<(String, String)> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| (span_context.trace_id().to_string(), span_context.span_id().to_string()))
}

/// Records `trace_id` and `span_id` on the span (declared as empty fields).
pub fn record_ids(span: &Span) {
    if let Some((trace_id, span_id)) = ids(span) {
        span.record("trace_id", trace_id.as_str());
        span.record("span_id", span_id.as_str());
    }
}
