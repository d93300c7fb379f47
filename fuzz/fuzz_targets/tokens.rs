//! Opaque tokens and PASETO access tokens from hostile input: never a panic,
//! never accepted unless we signed them.
#![no_main]

use std::{sync::OnceLock, time::Duration};

use identity::{
    domain::{OpaqueToken, ports::AccessTokenIssuer},
    infrastructure::{PasetoSettings, PasetoTokens},
};
use libfuzzer_sys::fuzz_target;

fn tokens() -> &'static PasetoTokens {
    static TOKENS: OnceLock<PasetoTokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        PasetoTokens::new(PasetoSettings {
            secret_key: None,
            previous_public_keys: vec![],
            issuer: "identity".into(),
            audience: "identity".into(),
            access_token_ttl: Duration::from_secs(600),
            leeway: Duration::from_secs(30),
        })
        .expect("an ephemeral key")
        .0
    })
}

fuzz_target!(|data: &str| {
    let _ = OpaqueToken::parse(data);
    let now = time::OffsetDateTime::now_utc();
    assert!(tokens().verify(data, now).is_err(), "a token we did not sign verified");
});
