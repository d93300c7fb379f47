//! Email parsing never panics, and a parsed address is its own canonical form.
#![no_main]

use identity::domain::Email;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(email) = Email::parse(data) {
        let again = Email::parse(email.as_str()).expect("a canonical address parses");
        assert_eq!(again, email);
        assert!(email.as_str().len() <= 254);
    }
});
