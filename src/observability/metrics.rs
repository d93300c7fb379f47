//! The Prometheus metrics of both binaries, in one registry per process (no
//! global state: each test server has its own).

use std::sync::{OnceLock, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublisherLabels {
    pub publisher: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub outcome: String,
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderStatusLabels {
    pub provider: String,
    pub status: String,
}

type LatencyFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s: validate-token answers in well under a millisecond, a
    // saturated login waits seconds.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_duration: LatencyFamily,
    pub login_attempts: Family<OutcomeLabels, Counter>,
    pub argon2_queue_depth: Gauge,
    pub argon2_wait: Histogram,
    pub argon2_shed: Counter,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    pub outbox_publish_errors: Family<PublisherLabels, Counter>,
    pub mailer_deliveries: Family<DeliveryLabels, Counter>,
    pub mailer_provider_responses: Family<ProviderStatusLabels, Counter>,
    pub mailer_retries: Counter,
    pub mailer_dead_letters: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("identity");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register("rpc_requests", "gRPC calls handled, by method and status code", rpc_requests.clone());
        let rpc_duration: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "rpc_duration",
            "gRPC call latency, by method and status code",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let login_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "login_attempts",
            "Logins by outcome: success, bad_credentials, unverified, disabled, throttled",
            login_attempts.clone(),
        );
        let argon2_queue_depth = Gauge::default();
        registry.register(
            "argon2_queue_depth",
            "Password hashes waiting for a hashing worker",
            argon2_queue_depth.clone(),
        );
        let argon2_wait = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register_with_unit(
            "argon2_wait",
            "Time a password hash waited for a hashing worker",
            Unit::Seconds,
            argon2_wait.clone(),
        );
        let argon2_shed = Counter::default();
        registry.register(
            "argon2_shed",
            "Password hashes refused (RESOURCE_EXHAUSTED) because no hashing worker took them in time",
            argon2_shed.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register("outbox_backlog", "Outbox events not yet published", outbox_backlog.clone());
        let outbox_oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest outbox event not yet published",
            Unit::Seconds,
            outbox_oldest_age.clone(),
        );
        let outbox_publish_errors = Family::<PublisherLabels, Counter>::default();
        registry.register(
            "outbox_publish_errors",
            "Failed attempts to publish outbox events",
            outbox_publish_errors.clone(),
        );
        let mailer_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "mailer_deliveries",
            "Messages the mailer settled, by outcome (sent, duplicate, retry, dead_letter) and provider",
            mailer_deliveries.clone(),
        );
        let mailer_provider_responses = Family::<ProviderStatusLabels, Counter>::default();
        registry.register(
            "mailer_provider_responses",
            "Answers from the email provider, by HTTP status (or error)",
            mailer_provider_responses.clone(),
        );
        let mailer_retries = Counter::default();
        registry.register("mailer_retries", "Messages sent to the retry queue", mailer_retries.clone());
        let mailer_dead_letters = Counter::default();
        registry.register(
            "mailer_dead_letters",
            "Messages moved to the dead-letter queue",
            mailer_dead_letters.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_duration,
            login_attempts,
            argon2_queue_depth,
            argon2_wait,
            argon2_shed,
            outbox_backlog,
            outbox_oldest_age,
            outbox_publish_errors,
            mailer_deliveries,
            mailer_provider_responses,
            mailer_retries,
            mailer_dead_letters,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub fn record_rpc(&self, method: &str, code: i32, seconds: f64) {
        let labels = RpcLabels { method: method.to_owned(), code: code_name(code).to_owned() };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration.get_or_create(&labels).observe(seconds);
    }

    /// One method's RPC series, resolved once per status code and then held,
    /// so that recording a call neither allocates labels nor looks them up.
    pub fn rpc_series(&self, method: &str) -> RpcSeries {
        RpcSeries {
            method: method.to_owned(),
            requests: self.rpc_requests.clone(),
            duration: self.rpc_duration.clone(),
            by_code: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    pub fn record_login(&self, outcome: &str) {
        self.login_attempts.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    pub fn record_delivery(&self, outcome: &str, provider: &str) {
        let labels = DeliveryLabels { outcome: outcome.to_owned(), provider: provider.to_owned() };
        self.mailer_deliveries.get_or_create(&labels).inc();
    }

    pub fn record_provider_response(&self, provider: &str, status: &str) {
        let labels = ProviderStatusLabels { provider: provider.to_owned(), status: status.to_owned() };
        self.mailer_provider_responses.get_or_create(&labels).inc();
    }
}

/// gRPC status codes 0–16; anything else is recorded as UNKNOWN (2).
const GRPC_CODES: usize = 17;

/// The counter and histogram of one method, per status code (see
/// [`Metrics::rpc_series`]); the same series `record_rpc` writes.
pub struct RpcSeries {
    method: String,
    requests: Family<RpcLabels, Counter>,
    duration: LatencyFamily,
    by_code: [OnceLock<(Counter, Histogram)>; GRPC_CODES],
}

impl RpcSeries {
    pub fn record(&self, code: i32, seconds: f64) {
        let index = usize::try_from(code).ok().filter(|&index| index < GRPC_CODES).unwrap_or(2);
        let (requests, duration) = self.by_code[index].get_or_init(|| {
            let code = i32::try_from(index).unwrap_or(2);
            let labels = RpcLabels { method: self.method.clone(), code: code_name(code).to_owned() };
            (self.requests.get_or_create(&labels).clone(), self.duration.get_or_create(&labels).clone())
        });
        requests.inc();
        duration.observe(seconds);
    }
}

/// gRPC status codes by name, as operators read them.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNRECOGNIZED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.record_rpc("SignUp", 0, 0.02);
        metrics.record_login("success");
        metrics.mailer_retries.inc();
        let text = metrics.render();
        assert!(text.contains(r#"identity_rpc_requests_total{method="SignUp",code="OK"} 1"#), "{text}");
        assert!(text.contains("identity_rpc_duration_seconds_bucket"), "{text}");
        assert!(text.contains(r#"identity_login_attempts_total{outcome="success"} 1"#), "{text}");
        assert!(text.contains("identity_mailer_retries_total 1"), "{text}");
        assert!(text.contains("identity_outbox_oldest_age_seconds"), "{text}");
    }

    #[test]
    fn a_resolved_series_writes_the_same_series_as_record_rpc() {
        let metrics = Metrics::new();
        let series = metrics.rpc_series("Login");
        series.record(16, 0.01);
        series.record(16, 0.01);
        metrics.record_rpc("Login", 16, 0.01);
        series.record(99, 0.01);
        let text = metrics.render();
        assert!(text.contains(r#"identity_rpc_requests_total{method="Login",code="UNAUTHENTICATED"} 3"#), "{text}");
        assert!(text.contains(r#"identity_rpc_requests_total{method="Login",code="UNKNOWN"} 1"#), "{text}");
    }
}
