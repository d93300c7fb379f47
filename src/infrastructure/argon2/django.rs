//! Django's password hash strings (`<algorithm>$...`), verified natively so
//! that users imported from a Django project keep their passwords; a
//! successful login then replaces the hash with our argon2id (see
//! [`super::Argon2Hasher`]'s `needs_rehash`).
//!
//! Each check runs on the same bounded pool as argon2, and each format's cost
//! is capped: a stored string asking for more work than the cap is refused
//! (after the dummy's work, like a wrong password), so a tampered or exotic
//! row cannot make one login take a minute.

use argon2::{Algorithm, Params, PasswordHash as Phc, Version};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use super::{hasher::Computation, pool::WorkerMemory};

/// Django 6.0's default for PBKDF2 (5.0 used 720,000, 5.2 1,000,000); above
/// it, a stored hash is refused.
pub(super) const MAX_PBKDF2_ITERATIONS: u32 = 1_200_000;

/// Django's default bcrypt cost is 12; each step doubles the work.
pub(super) const MAX_BCRYPT_COST: u32 = 13;

/// Django's argon2 defaults (argon2-cffi's of its day): 100 MiB, 2 passes, 8
/// lanes. Its memory is allocated for the one check and freed after it.
const MAX_ARGON2_M_COST: u32 = 102_400;
const MAX_ARGON2_T_COST: u32 = 4;
const MAX_ARGON2_P_COST: u32 = 8;

/// Below these a legacy check costs less than an argon2 verification with our
/// parameters, which would tell an attacker timing logins that the account
/// exists: such checks are followed by the dummy's work.
const CHEAP_PBKDF2_ITERATIONS: u32 = 100_000;
const CHEAP_BCRYPT_COST: u32 = 10;

/// Django's algorithm names this module reads, as in its `PASSWORD_HASHERS`.
const ALGORITHMS: [&str; 6] = ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "bcrypt", "md5"];

/// What a stored password string is, as far as verification goes.
pub(super) enum Stored<'a> {
    /// One of ours (or another PHC string): the argon2 path.
    Phc,
    /// Django's unusable password (`!` and random text), or a Django format
    /// this service does not read, stored as `!` by the import: nothing
    /// verifies against it.
    Unusable,
    /// One of the Django formats above.
    Django(&'a str, &'a str),
}

/// Tells the stored string's kind from its prefix alone.
pub(super) fn classify(stored: &str) -> Stored<'_> {
    if stored.starts_with('!') {
        return Stored::Unusable;
    }
    match stored.split_once('$') {
        Some((algorithm, rest)) if ALGORITHMS.contains(&algorithm) => Stored::Django(algorithm, rest),
        _ => Stored::Phc,
    }
}

/// Whether `encoded` is a Django hash this module can verify within its caps:
/// the import stores those as they are and the others as unusable.
pub fn is_supported(encoded: &str) -> bool {
    match classify(encoded) {
        Stored::Django(algorithm, rest) => matches!(parse(algorithm, rest), Ok(Some(_))),
        Stored::Phc | Stored::Unusable => false,
    }
}

/// A parsed Django hash, ready to be checked against a password.
enum Format {
    Pbkdf2 { is_sha1: bool, iterations: u32, salt: String, expected: Vec<u8> },
    Argon2 { algorithm: Algorithm, version: Version, params: Params, salt: Vec<u8>, expected: Vec<u8> },
    Bcrypt { is_sha256_prehashed: bool, encoded: String, cost: u32 },
    Md5 { salt: String, expected: Vec<u8> },
}

/// One check, to run on a pool worker.
pub(super) struct Check {
    format: Format,
    password: SecretString,
}

impl Check {
    /// Whether this check costs less than a verification with our parameters
    /// (see [`CHEAP_PBKDF2_ITERATIONS`]).
    pub(super) fn is_cheaper_than_ours(&self, our_work: u64) -> bool {
        match &self.format {
            Format::Pbkdf2 { iterations, .. } => *iterations < CHEAP_PBKDF2_ITERATIONS,
            Format::Argon2 { params, .. } => super::hasher::work(params) < our_work,
            Format::Bcrypt { cost, .. } => *cost < CHEAP_BCRYPT_COST,
            Format::Md5 { .. } => true,
        }
    }

    /// Computes the hash of the password and compares it in constant time:
    /// `vec![1]` for a match, `vec![0]` otherwise (the pool carries bytes).
    ///
    /// # Errors
    /// The computation failed (argon2 refusing its parameters, say).
    pub(super) fn run(self, memory: &mut WorkerMemory) -> anyhow::Result<Vec<u8>> {
        let password = self.password.expose_secret().as_bytes();
        let matches = match self.format {
            Format::Pbkdf2 { is_sha1, iterations, salt, expected } => {
                let mut output = vec![0u8; expected.len()];
                if is_sha1 {
                    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt.as_bytes(), iterations, &mut output);
                } else {
                    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), iterations, &mut output);
                }
                bool::from(output.ct_eq(&expected))
            }
            Format::Argon2 { algorithm, version, params, salt, expected } => {
                let computation = Computation { algorithm, version, params, password: self.password.clone(), salt };
                bool::from(computation.run(memory)?.ct_eq(&expected))
            }
            Format::Bcrypt { is_sha256_prehashed, encoded, .. } => {
                // Django's bcrypt_sha256 hashes the hex SHA-256 of the password,
                // so that passwords longer than bcrypt's 72 bytes all count.
                let outcome = if is_sha256_prehashed {
                    bcrypt::verify(hex::encode(sha2::Sha256::digest(password)), &encoded)
                } else {
                    bcrypt::verify(password, &encoded)
                };
                outcome.map_err(|e| anyhow::anyhow!("bcrypt verification failed: {e}"))?
            }
            Format::Md5 { salt, expected } => {
                // md-5 is on the newer `digest` than sha2: its own trait.
                let mut md5 = <md5::Md5 as md5::Digest>::new();
                md5::Digest::update(&mut md5, salt.as_bytes());
                md5::Digest::update(&mut md5, password);
                bool::from(md5::Digest::finalize(md5).as_slice().ct_eq(&expected))
            }
        };
        Ok(vec![u8::from(matches)])
    }
}

/// The check of `password` against a Django hash; `Ok(None)` when the hash
/// asks for more work than its format's cap.
///
/// # Errors
/// A malformed hash of a known format (a corrupt row).
pub(super) fn check(algorithm: &str, rest: &str, password: &str) -> anyhow::Result<Option<Check>> {
    let Some(format) = parse(algorithm, rest)? else { return Ok(None) };
    Ok(Some(Check { format, password: SecretString::from(password.to_owned()) }))
}

fn parse(algorithm: &str, rest: &str) -> anyhow::Result<Option<Format>> {
    match algorithm {
        "pbkdf2_sha256" | "pbkdf2_sha1" => {
            let is_sha1 = algorithm == "pbkdf2_sha1";
            let mut parts = rest.splitn(3, '$');
            let (Some(iterations), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
                anyhow::bail!("malformed {algorithm} hash");
            };
            let iterations: u32 =
                iterations.parse().map_err(|_| anyhow::anyhow!("malformed {algorithm} iterations"))?;
            let expected = base64::engine::general_purpose::STANDARD
                .decode(hash)
                .map_err(|_| anyhow::anyhow!("malformed {algorithm} hash output"))?;
            let expected_len = if is_sha1 { 20 } else { 32 };
            if iterations == 0 || expected.len() != expected_len {
                anyhow::bail!("malformed {algorithm} hash: bad iterations or output length");
            }
            if iterations > MAX_PBKDF2_ITERATIONS {
                refused_over_cap(algorithm, u64::from(iterations));
                return Ok(None);
            }
            Ok(Some(Format::Pbkdf2 { is_sha1, iterations, salt: salt.to_owned(), expected }))
        }
        "argon2" => {
            // Django writes argon2-cffi's PHC string after its own `argon2`
            // (whose `$` separator is the PHC string's first character).
            let phc_string = format!("${rest}");
            let phc = Phc::new(&phc_string).map_err(|e| anyhow::anyhow!("malformed argon2 hash: {e}"))?;
            let algorithm = Algorithm::try_from(phc.algorithm.as_str())
                .map_err(|e| anyhow::anyhow!("malformed argon2 hash: {e}"))?;
            // Hashes from before argon2 1.3 carry no version: PHC says 0x10.
            let version = phc
                .version
                .map(Version::try_from)
                .transpose()
                .map_err(|e| anyhow::anyhow!("malformed argon2 hash version: {e}"))?
                .unwrap_or(Version::V0x10);
            let params = Params::try_from(&phc).map_err(|e| anyhow::anyhow!("malformed argon2 parameters: {e}"))?;
            let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
                anyhow::bail!("malformed argon2 hash: no salt or no output");
            };
            if params.m_cost() > MAX_ARGON2_M_COST
                || params.t_cost() > MAX_ARGON2_T_COST
                || params.p_cost() > MAX_ARGON2_P_COST
            {
                refused_over_cap("argon2", super::hasher::work(&params));
                return Ok(None);
            }
            Ok(Some(Format::Argon2 {
                algorithm,
                version,
                params,
                salt: salt.to_vec(),
                expected: expected.as_bytes().to_vec(),
            }))
        }
        "bcrypt_sha256" | "bcrypt" => {
            // `bcrypt$$2b$12$<salt and hash>`: an empty salt field, then the
            // modular crypt string, whose own `$` starts `rest`.
            let encoded = rest;
            let cost = bcrypt_cost(encoded).ok_or_else(|| anyhow::anyhow!("malformed {algorithm} hash"))?;
            if cost > MAX_BCRYPT_COST {
                refused_over_cap(algorithm, u64::from(cost));
                return Ok(None);
            }
            Ok(Some(Format::Bcrypt {
                is_sha256_prehashed: algorithm == "bcrypt_sha256",
                encoded: encoded.to_owned(),
                cost,
            }))
        }
        "md5" => {
            let Some((salt, hash)) = rest.split_once('$') else { anyhow::bail!("malformed md5 hash") };
            let expected = hex::decode(hash).map_err(|_| anyhow::anyhow!("malformed md5 hash output"))?;
            if expected.len() != 16 {
                anyhow::bail!("malformed md5 hash output");
            }
            Ok(Some(Format::Md5 { salt: salt.to_owned(), expected }))
        }
        other => anyhow::bail!("not a Django hash format: {other}"),
    }
}

/// The cost of a `$2a$`/`$2b$`/`$2y$` string, checked for shape (the bcrypt
/// crate checks the rest).
fn bcrypt_cost(encoded: &str) -> Option<u32> {
    let mut parts = encoded.split('$');
    let (Some(""), Some(variant), Some(cost), Some(rest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let is_variant = matches!(variant, "2a" | "2b" | "2x" | "2y");
    (is_variant && cost.len() == 2 && rest.len() == 53).then(|| cost.parse().ok()).flatten()
}

fn refused_over_cap(algorithm: &str, cost: u64) {
    // The cost only: the hash itself stays out of the log.
    tracing::warn!(
        algorithm,
        cost,
        "stored Django password hash costs more than its cap allows: refused as a failed verification"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the check on this thread, as a pool worker would.
    fn verifies(encoded: &str, password: &str) -> bool {
        let Stored::Django(algorithm, rest) = classify(encoded) else { panic!("not a Django hash: {encoded}") };
        let check = check(algorithm, rest, password).unwrap().expect("within the caps");
        let mut memory = WorkerMemory::for_tests();
        check.run(&mut memory).unwrap() == vec![1]
    }

    // The vectors below are Django's own, from `tests/auth_tests/test_hashers.py`.

    #[test]
    fn pbkdf2_sha256_verifies_djangos_vectors() {
        // (Django's second vector, `seasalt2`, adds nothing but seconds of an
        // unoptimised build.)
        let encoded = "pbkdf2_sha256$390000$seasalt$8xBlGd3jVgvJ+92hWPxi5ww0uuAuAnKgC45eudxro7c=";
        assert!(verifies(encoded, "lètmein"));
        assert!(!verifies(encoded, "lètmeinz"));
    }

    #[test]
    fn pbkdf2_sha1_verifies_djangos_vector() {
        let encoded = "pbkdf2_sha1$390000$seasalt2$aDapRanzW8aHTz97v2TcfHzWD+I=";
        assert!(verifies(encoded, "lètmein"));
        assert!(!verifies(encoded, "lètmeinz"));
    }

    #[test]
    fn salted_and_unsalted_md5_verify_djangos_vectors() {
        assert!(verifies("md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3", "lètmein"));
        assert!(!verifies("md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3", "lètmeinz"));
        // Django's "alternate unsalted syntax" of its unsalted MD5 hasher.
        assert!(verifies("md5$$88a434c88cca4e900f7874cd98123f43", "lètmein"));
    }

    #[test]
    fn argon2_verifies_djangos_vectors_with_and_without_a_version() {
        for encoded in [
            "argon2$argon2i$m=8,t=1,p=1$c29tZXNhbHQ$gwQOXSNhxiOxPOA0+PY10P9QFO4NAYysnqRt1GSQLE55m+2GYDt9FEjPMHhP2Cuf0nOEXXMocVrsJAtNSsKyfg",
            "argon2$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
            "argon2$argon2id$v=19$m=102400,t=2,p=8$Y041dExhNkljRUUy$TMa6A8fPJhCAUXRhJXCXdw",
        ] {
            assert!(verifies(encoded, "secret"), "{encoded}");
            assert!(!verifies(encoded, "wrong"), "{encoded}");
        }
    }

    // Django's tests make bcrypt hashes with random salts, so there is no
    // fixed vector of theirs: these are wrapped the way Django wraps them, and
    // the classic OpenBSD vector checks bcrypt itself.
    #[test]
    fn bcrypt_sha256_hashes_the_hex_sha256_of_the_password() {
        let prehashed = hex::encode(sha2::Sha256::digest("lètmein".as_bytes()));
        let encoded = format!("bcrypt_sha256${}", bcrypt::hash_with_salt(&prehashed, 4, [7u8; 16]).unwrap());
        assert!(verifies(&encoded, "lètmein"));
        assert!(!verifies(&encoded, "lètmeinz"));
        // Not the password itself: that would be Django's plain bcrypt.
        let plain = format!("bcrypt_sha256${}", bcrypt::hash_with_salt("lètmein", 4, [7u8; 16]).unwrap());
        assert!(!verifies(&plain, "lètmein"));
    }

    #[test]
    fn plain_bcrypt_verifies_the_password_itself() {
        let encoded = format!("bcrypt${}", bcrypt::hash_with_salt("lètmein", 4, [7u8; 16]).unwrap());
        assert!(encoded.starts_with("bcrypt$$2b$04$"), "{encoded}");
        assert!(verifies(&encoded, "lètmein"));
        assert!(!verifies(&encoded, "lètmeinz"));
        // The classic OpenBSD vector, in Django's wrapping.
        assert!(verifies("bcrypt$$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"));
    }

    #[test]
    fn hashes_over_their_caps_are_refused_before_any_work() {
        for (algorithm, rest) in [
            ("pbkdf2_sha256", "1200001$seasalt$8xBlGd3jVgvJ+92hWPxi5ww0uuAuAnKgC45eudxro7c="),
            ("argon2", "argon2id$v=19$m=204800,t=2,p=8$Y041dExhNkljRUUy$TMa6A8fPJhCAUXRhJXCXdw"),
            ("bcrypt", "$2b$14$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
        ] {
            assert!(check(algorithm, rest, "secret").unwrap().is_none(), "{algorithm}");
        }
    }

    #[test]
    fn malformed_hashes_of_known_formats_are_errors_and_unsupported_for_import() {
        for encoded in [
            "pbkdf2_sha256$many$salt$abc",
            "pbkdf2_sha1$10$salt$not base64",
            "md5$salt$zz",
            "bcrypt$$2b$12$short",
            "argon2$x",
        ] {
            let Stored::Django(algorithm, rest) = classify(encoded) else { panic!("{encoded}") };
            assert!(check(algorithm, rest, "secret").is_err(), "{encoded}");
            assert!(!is_supported(encoded), "{encoded}");
        }
    }

    #[test]
    fn unusable_and_foreign_strings_are_told_apart_from_django_hashes() {
        assert!(matches!(classify("!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH"), Stored::Unusable));
        assert!(matches!(classify("$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA"), Stored::Phc));
        assert!(matches!(classify("scrypt$16384$salt$8$1$hash"), Stored::Phc));
        assert!(is_supported("md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3"));
        assert!(!is_supported("!unusable"));
        assert!(!is_supported("scrypt$16384$salt$8$1$hash"));
    }
}
