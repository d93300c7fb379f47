//! Outbox payloads (and so AMQP message bodies) from hostile bytes: decoding
//! fails cleanly, and whatever decodes re-encodes.
#![no_main]

use identity::infrastructure::outbox::payload;
use libfuzzer_sys::fuzz_target;

const TYPES: &[&str] = &[
    "user.verification_email_requested",
    "user.password_reset_requested",
    "user.password_changed",
    "user.registration_attempted",
    "user.deleted",
    "user.unknown",
];

fuzz_target!(|data: (u8, &[u8])| {
    let (kind, body) = data;
    let event_type = TYPES[usize::from(kind) % TYPES.len()];
    if let Ok(event) = payload::decode(event_type, body) {
        let encoded = payload::encode(&event).expect("a decoded event encodes");
        assert!(payload::decode(event_type, encoded.as_bytes()).is_ok());
    }
});
