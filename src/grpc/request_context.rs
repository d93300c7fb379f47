//! One span per RPC, with the method, a request id (the caller's `x-request-id`
//! or a fresh one, echoed back in the response metadata), the user id where a
//! handler learns it, the gRPC status code and the latency; and one log line when
//! the call ends, with the SQL statements it ran.
//!
//! Paths are the caller's to choose, and the router answers any of them
//! (UNIMPLEMENTED). So the metrics' `method` label takes its values from a closed
//! set, the methods the server serves, plus [`UNKNOWN`]; otherwise every made-up
//! path would add series to `/metrics` for as long as the process lives.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use anyhow::Context as _;
use http::{HeaderValue, Request, Response};
use prost::Message as _;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, field::Empty};

use crate::observability::{Metrics, RpcSeries, statements, trace_context};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Caller-supplied ids longer than this are replaced, so logs stay bounded.
const MAX_REQUEST_ID_LENGTH: usize = 128;
/// The `method` label (and span name) of every path the server does not serve.
pub const UNKNOWN: &str = "unknown";
/// An unknown path's service and method are logged cut to this many bytes.
const MAX_UNKNOWN_PART_LENGTH: usize = 64;

/// The RPCs the server serves, by path (`/package.Service/Method`), each with
/// its metrics label (the method name).
#[derive(Debug, Default)]
pub struct ServedMethods {
    labels: HashMap<String, String>,
}

impl ServedMethods {
    /// Reads the services out of encoded `FileDescriptorSet`s: the ones the
    /// server registers for reflection, so the set cannot drift from what the
    /// reflection service advertises.
    ///
    /// # Errors
    /// A descriptor set that does not decode.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> anyhow::Result<Self> {
        let mut labels = HashMap::new();
        for encoded in sets {
            let set = prost_types::FileDescriptorSet::decode(*encoded).context("decoding a file descriptor set")?;
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    let service_name = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    for method in &service.method {
                        labels.insert(format!("/{service_name}/{}", method.name()), method.name().to_owned());
                    }
                }
            }
        }
        Ok(Self { labels })
    }

    /// The metrics label of a served path; `None` for any other path.
    pub fn label(&self, path: &str) -> Option<&str> {
        self.labels.get(path).map(String::as_str)
    }
}

/// Every served path's metrics series, resolved when the server starts, and
/// the one series of all other paths.
struct SeriesByPath {
    served: HashMap<String, Arc<RpcSeries>>,
    unknown: Arc<RpcSeries>,
}

impl SeriesByPath {
    /// The series of `path`, and whether the server serves it.
    fn of(&self, path: &str) -> (&Arc<RpcSeries>, bool) {
        self.served.get(path).map_or((&self.unknown, false), |series| (series, true))
    }
}

/// Wraps every RPC: span, request id, caller's trace context, metrics.
#[derive(Clone)]
pub struct RequestContextLayer {
    series: Arc<SeriesByPath>,
}

impl RequestContextLayer {
    pub fn new(metrics: &Metrics, methods: &ServedMethods) -> Self {
        let served =
            methods.labels.iter().map(|(path, label)| (path.clone(), Arc::new(metrics.rpc_series(label)))).collect();
        Self { series: Arc::new(SeriesByPath { served, unknown: Arc::new(metrics.rpc_series(UNKNOWN)) }) }
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner, series: Arc::clone(&self.series) }
    }
}

#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
    series: Arc<SeriesByPath>,
}

/// At most `max` bytes of `raw`, cut at a character boundary.
fn truncated(raw: &str, max: usize) -> &str {
    let mut end = raw.len().min(max);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    &raw[..end]
}

fn request_id<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LENGTH && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), ToOwned::to_owned)
}

/// `grpc-status` travels in the headers for errors (trailers-only responses);
/// its absence from the headers means the call succeeded.
fn grpc_code<B>(response: &Response<B>) -> i32 {
    response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestContext<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let path = request.uri().path();
        let (series, is_served) = self.series.of(path);
        let series = Arc::clone(series);
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", path));
        let request_id = request_id(&request);
        // Probes and reflection are frequent and uninteresting: debug level.
        let is_infrastructure = is_served && service.starts_with("grpc.");
        // Unknown paths are logged cut short: their length is the caller's choice.
        let (name, service, method) = if is_served {
            (path.trim_start_matches('/'), service, method)
        } else {
            (UNKNOWN, truncated(service, MAX_UNKNOWN_PART_LENGTH), truncated(method, MAX_UNKNOWN_PART_LENGTH))
        };
        let span = tracing::info_span!(
            "rpc",
            otel.name = %name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = %request_id,
            user_id = Empty,
            rpc.grpc.status_code = Empty,
            latency_ms = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        // A caller's `traceparent` makes this call part of its trace.
        trace_context::continue_from_headers(&span, request.headers());
        trace_context::record_ids(&span);
        Box::pin(
            async move {
                let started = Instant::now();
                let (mut result, db_statements) = statements::counted(inner.call(request)).await;
                let elapsed = started.elapsed().as_secs_f64();
                let latency_ms = elapsed * 1000.0;
                let span = tracing::Span::current();
                span.record("latency_ms", latency_ms);
                if let Ok(response) = &mut result {
                    let code = grpc_code(response);
                    span.record("rpc.grpc.status_code", code);
                    series.record(code, elapsed);
                    if let Ok(value) = HeaderValue::from_str(&request_id) {
                        response.headers_mut().insert(REQUEST_ID_HEADER, value);
                    }
                    if is_infrastructure {
                        tracing::debug!(code, latency_ms, db_statements, "rpc finished");
                    } else {
                        tracing::info!(code, latency_ms, db_statements, "rpc finished");
                    }
                } else {
                    tracing::warn!(latency_ms, "rpc failed at the transport");
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_methods_come_from_the_descriptor_sets_and_nothing_else_is_served() {
        let methods = ServedMethods::from_descriptor_sets(&[
            crate::grpc::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .unwrap();
        assert_eq!(methods.label("/identity.v1.UserService/SignUp"), Some("SignUp"));
        assert_eq!(methods.label("/identity.v1.AdminService/GetUser"), Some("GetUser"));
        assert_eq!(methods.label("/grpc.health.v1.Health/Check"), Some("Check"));
        assert_eq!(methods.label("/identity.v1.UserService/NoSuchMethod"), None);
        assert_eq!(methods.label("/made.up.Service/SignUp"), None);
        assert_eq!(methods.label("SignUp"), None);
        // Field 1 (a file), five bytes long, of which one is there.
        assert!(ServedMethods::from_descriptor_sets(&[&[0x0a, 0x05, 0x01]]).is_err());
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("short", 64), "short");
        assert_eq!(truncated("abcdef", 3), "abc");
        assert_eq!(truncated("aé", 2), "a");
    }
}
