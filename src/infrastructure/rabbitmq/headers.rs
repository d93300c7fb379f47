//! Message headers we read and write.

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

/// Which delivery attempt this message is (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-identity-attempt";
/// Why the previous attempt failed, on messages in the retry queue.
pub const LAST_ERROR_HEADER: &str = "x-identity-last-error";
/// Why the message was given up, on messages in the dead-letter queue.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-identity-dead-letter-reason";

pub fn string_header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

pub fn integer_header(properties: &BasicProperties, name: &str) -> Option<i64> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// The properties' headers with `updates` applied.
pub fn with_headers(properties: &BasicProperties, updates: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = properties.headers().clone().unwrap_or_default();
    for (name, value) in updates {
        table.insert(ShortString::from(*name), value.clone());
    }
    table
}

pub fn long_string(value: &str) -> AMQPValue {
    // Header values are bounded so a huge provider answer cannot bloat messages.
    AMQPValue::LongString(LongString::from(value.chars().take(1000).collect::<String>()))
}
