//! CloudEvents 1.0 in AMQP binary content mode, for the user events: the
//! attributes as application properties (headers) prefixed `cloudEvents:`, the
//! data as the message body, its media type as the content type (AMQP
//! protocol binding for CloudEvents, section 3.1). The SDK's AMQP binding is
//! for AMQP 1.0 (fe2o3-amqp); RabbitMQ's 0-9-1 headers are written here.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::domain::ports::OutboxEvent;

/// The prefix of every CloudEvents attribute header.
pub const ATTRIBUTE_PREFIX: &str = "cloudEvents:";
/// The body's media type (CloudEvents `datacontenttype`, carried as the content type).
pub const CONTENT_TYPE: &str = "application/protobuf";
pub const SPEC_VERSION: &str = "1.0";

/// The CloudEvents attributes of one stored user event, as headers.
///
/// `subject` is the user's id (every user event is about one user); `time` is
/// when the change was made, in RFC 3339 (UTC).
pub fn attribute_headers(event: &OutboxEvent, source: &str, subject: &str) -> FieldTable {
    let time = event.created_at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default();
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("specversion", SPEC_VERSION),
        ("id", event.id.hyphenated().to_string().as_str()),
        ("source", source),
        ("type", event.event_type.as_str()),
        ("time", time.as_str()),
        ("subject", subject),
    ] {
        headers.insert(
            ShortString::from(format!("{ATTRIBUTE_PREFIX}{name}")),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    headers
}

/// When the event's `time` header says it happened (for tests and consumers in Rust).
pub fn parse_time(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use uuid::Uuid;

    fn header(headers: &FieldTable, name: &str) -> String {
        match headers.inner().get(name) {
            Some(AMQPValue::LongString(value)) => String::from_utf8(value.as_bytes().to_vec()).unwrap(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn the_required_attributes_and_the_subject_and_time_are_prefixed_headers() {
        let id = Uuid::now_v7();
        let event = OutboxEvent {
            id,
            user_id: None,
            event_type: "identity.v1.user.signed_up".into(),
            payload: String::new(),
            trace_context: None,
            created_at: datetime!(2026-05-06 7:08:09.5 +02:00),
        };
        let headers = attribute_headers(&event, "/identity", "0190-user");
        // The binding's required context attributes (id, source, specversion,
        // type) and the optional ones this service sets (subject, time).
        assert_eq!(header(&headers, "cloudEvents:specversion"), "1.0");
        assert_eq!(header(&headers, "cloudEvents:id"), id.to_string());
        assert_eq!(header(&headers, "cloudEvents:source"), "/identity");
        assert_eq!(header(&headers, "cloudEvents:type"), "identity.v1.user.signed_up");
        assert_eq!(header(&headers, "cloudEvents:subject"), "0190-user");
        // RFC 3339, in UTC.
        assert_eq!(header(&headers, "cloudEvents:time"), "2026-05-06T05:08:09.5Z");
        assert_eq!(parse_time(&header(&headers, "cloudEvents:time")), Some(datetime!(2026-05-06 5:08:09.5 UTC)));
        assert_eq!(headers.inner().len(), 6, "no other header: datacontenttype is the content type");
    }
}
