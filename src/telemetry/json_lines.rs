//! The JSON-lines log layer: one object per event, with the fields of every
//! span it happened in flattened next to the event's own.
//!
//! Span fields are kept as values in the span's extensions when the span is
//! created or records a field, and written straight into the line when an
//! event happens. (`tracing_subscriber`'s JSON formatter keeps them as a JSON
//! string instead, which it parses and re-serialises on every `record` and
//! which a flattening formatter must parse again on every event: about half
//! the cost of a cheap RPC's log line.)

use std::{cell::RefCell, fmt, io::Write};

use serde_json::Value;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

/// Writes each event as one JSON line to standard output.
pub struct JsonLines<W = fn() -> std::io::Stdout> {
    make_writer: W,
}

impl JsonLines {
    pub fn stdout() -> Self {
        Self { make_writer: std::io::stdout }
    }
}

#[cfg(test)]
impl<W: Fn() -> O, O: Write> JsonLines<W> {
    /// Lines go wherever `make_writer` points, one `write_all` per line.
    pub fn to(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// A span's fields, in the order they were first recorded.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, Value)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(key, _)| *key == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Value::from(error_chain(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), Value::from(format!("{value:?}")));
    }
}

/// The whole chain, once: "outer: inner: root cause".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// One line being written: each key once, the first writer of a key wins.
struct Line<'a> {
    buffer: &'a mut Vec<u8>,
    written: Vec<&'static str>,
}

impl Line<'_> {
    fn key(&mut self, name: &'static str) -> bool {
        if self.written.contains(&name) {
            return false;
        }
        self.written.push(name);
        if self.buffer.len() > 1 {
            self.buffer.push(b',');
        }
        // Field names are Rust identifiers or dotted names: no escaping can go wrong.
        let _ = serde_json::to_writer(&mut *self.buffer, name);
        self.buffer.push(b':');
        true
    }

    fn value(&mut self, name: &'static str, value: &impl serde::Serialize) {
        if self.key(name) {
            let _ = serde_json::to_writer(&mut *self.buffer, value);
        }
    }
}

impl Visit for Line<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field.name(), &serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field.name(), &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field.name(), &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field.name(), &value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.value(field.name(), &value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.value(field.name(), &error_chain(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.value(field.name(), &format!("{value:?}"));
    }
}

thread_local! {
    /// Each thread's line buffer, reused so that a line costs no allocation of its own.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, W, O> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn() -> O + 'static,
    O: Write,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        BUFFER.with(|cell| {
            // An event logged while this thread writes a line (from a Debug
            // impl, say) gets a buffer of its own.
            let mut own = Vec::new();
            let mut borrowed = cell.try_borrow_mut();
            let buffer = match borrowed.as_mut() {
                Ok(buffer) => &mut **buffer,
                Err(_) => &mut own,
            };
            buffer.clear();
            buffer.push(b'{');
            let mut line = Line { buffer, written: Vec::with_capacity(24) };
            let metadata = event.metadata();
            let timestamp = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            line.value("timestamp", &timestamp);
            line.value("level", &metadata.level().as_str());
            line.value("target", &metadata.target());
            // The event's own fields win over its spans', inner spans over outer ones.
            event.record(&mut line);
            if let Some(scope) = ctx.event_scope(event) {
                let mut leaf = true;
                for span in scope {
                    if leaf {
                        line.value("span", &span.name());
                        leaf = false;
                    }
                    if let Some(fields) = span.extensions().get::<SpanFields>() {
                        for (name, value) in &fields.0 {
                            line.value(name, value);
                        }
                    }
                }
            }
            line.buffer.extend_from_slice(b"}\n");
            let _ = (self.make_writer)().write_all(line.buffer);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(run: impl FnOnce()) -> Vec<serde_json::Map<String, Value>> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLines::to(move || sink.clone()));
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn an_event_carries_its_spans_fields_with_inner_spans_and_the_event_winning_a_clash() {
        let lines = lines_of(|| {
            let outer =
                tracing::info_span!("rpc", request_id = "r-1", user_id = tracing::field::Empty, shared = "outer");
            let _outer = outer.enter();
            outer.record("user_id", "u-1");
            let inner = tracing::info_span!("step", shared = "inner", detail = 7_u64);
            let _inner = inner.enter();
            tracing::info!(detail = "event", latency_ms = 1.5, "rpc finished");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["message"], "rpc finished");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"], "step");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["user_id"], "u-1");
        assert_eq!(line["shared"], "inner");
        assert_eq!(line["detail"], "event");
        assert_eq!(line["latency_ms"], 1.5);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn a_field_recorded_twice_keeps_its_last_value_and_empty_fields_are_left_out() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("rpc", code = tracing::field::Empty, never = tracing::field::Empty);
            let _entered = span.enter();
            span.record("code", 1_i64);
            span.record("code", 0_i64);
            tracing::warn!(error = &std::io::Error::other("cause") as &(dyn std::error::Error + 'static), "failed");
        });
        let line = &lines[0];
        assert_eq!(line["code"], 0);
        assert!(!line.contains_key("never"));
        assert_eq!(line["error"], "cause");
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn strings_with_quotes_and_newlines_stay_one_valid_line() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLines::to(move || sink.clone()));
        tracing::subscriber::with_default(subscriber, || tracing::info!(note = "a \"quoted\"\nline", "x"));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1);
        let line: serde_json::Map<String, Value> = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["note"], "a \"quoted\"\nline");
    }
}
