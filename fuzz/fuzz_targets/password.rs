//! Password parsing (length rules and the bounded zxcvbn check) never panics and
//! never accepts more than 128 code points.
#![no_main]

use identity::{
    domain::{NewPassword, PasswordPolicy, PlaintextPassword},
    infrastructure::zxcvbn_meter::assess_now,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (String, String)| {
    let (password, context) = data;
    if let Ok(parsed) = PlaintextPassword::parse(password.clone()) {
        assert!(parsed.expose().chars().count() <= 128);
    }
    if let Ok(candidate) = NewPassword::check_length(password, PasswordPolicy { min_length: 12 }) {
        let _ = NewPassword::accept(candidate.clone(), &assess_now(candidate.expose(), &[context]));
    }
});
