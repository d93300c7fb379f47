//! One span per RPC, with the method, a request id (the caller's `x-request-id`
//! or a fresh one, echoed back in the response metadata), the user id where a
//! handler learns it, the gRPC status code and the latency; and one log line when
//! the call ends.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, field::Empty};

use crate::observability::{Metrics, trace_context};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Caller-supplied ids longer than this are replaced, so logs stay bounded.
const MAX_REQUEST_ID_LENGTH: usize = 128;

/// Wraps every RPC: span, request id, caller's trace context, metrics.
#[derive(Clone)]
pub struct RequestContextLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner, metrics: Arc::clone(&self.metrics) }
    }
}

#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
    metrics: Arc<Metrics>,
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

        let path = request.uri().path().to_owned();
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", path.as_str()));
        let request_id = request_id(&request);
        // Probes and reflection are frequent and uninteresting: debug level.
        let is_infrastructure = service.starts_with("grpc.");
        let method = method.to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
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
        let metrics = Arc::clone(&self.metrics);
        Box::pin(
            async move {
                let started = Instant::now();
                let mut result = inner.call(request).await;
                let elapsed = started.elapsed().as_secs_f64();
                let latency_ms = elapsed * 1000.0;
                let span = tracing::Span::current();
                span.record("latency_ms", latency_ms);
                if let Ok(response) = &mut result {
                    let code = grpc_code(response);
                    span.record("rpc.grpc.status_code", code);
                    metrics.record_rpc(&method, code, elapsed);
                    if let Ok(value) = HeaderValue::from_str(&request_id) {
                        response.headers_mut().insert(REQUEST_ID_HEADER, value);
                    }
                    if is_infrastructure {
                        tracing::debug!(code, latency_ms, "rpc finished");
                    } else {
                        tracing::info!(code, latency_ms, "rpc finished");
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
