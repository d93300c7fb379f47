//! Password parsing (length rules and the zxcvbn check) never panics and never
//! accepts more than 128 code points.
#![no_main]

use identity::domain::{NewPassword, PasswordPolicy, PlaintextPassword};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (String, String)| {
    let (password, context) = data;
    if let Ok(parsed) = PlaintextPassword::parse(password.clone()) {
        assert!(parsed.expose().chars().count() <= 128);
    }
    let _ = NewPassword::parse(password, PasswordPolicy { min_length: 12 }, &[context.as_str()]);
});
