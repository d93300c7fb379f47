//! Cross-cutting observability: W3C trace context across process boundaries,
//! Prometheus metrics and the endpoint that serves them.

pub mod metrics;
pub mod metrics_server;
pub mod statements;
pub mod trace_context;

pub use metrics::{Metrics, RpcSeries};
