//! Users brought over from Django log in with their Django password hashes,
//! which the first successful login replaces with argon2id.

use identity::grpc::proto::LoginRequest;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use sha2::Digest as _;
use tonic::Code;

use testkit::on_both_databases;

use crate::helpers::{TestApp, spawn_app, verified_user};

on_both_databases!(
    builder = spawn_app;
    every_django_hash_kind_logs_in_with_its_password_and_is_rehashed_once,
    an_unusable_django_password_is_answered_like_a_wrong_one,
);

/// Django's PBKDF2 string at a low iteration count: Django's own vectors (390,000
/// iterations, checked by the unit tests) take seconds in an unoptimised build.
pub fn pbkdf2(kind: &str, password: &str, salt: &str) -> String {
    use base64::Engine as _;
    let mut output = vec![0u8; if kind == "pbkdf2_sha1" { 20 } else { 32 }];
    if kind == "pbkdf2_sha1" {
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password.as_bytes(), salt.as_bytes(), 1000, &mut output);
    } else {
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), 1000, &mut output);
    }
    format!("{kind}$1000${salt}${}", base64::engine::general_purpose::STANDARD.encode(output))
}

/// Each kind of hash Django writes, with the password it was made from
/// (Django's own test vectors where they are cheap enough).
pub fn django_hashes() -> Vec<(&'static str, String, &'static str)> {
    let bcrypt_sha256 = {
        let prehashed = hex::encode(sha2::Sha256::digest("lètmein".as_bytes()));
        format!("bcrypt_sha256${}", bcrypt::hash_with_salt(prehashed, 4, [3u8; 16]).unwrap())
    };
    let bcrypt = format!("bcrypt${}", bcrypt::hash_with_salt("lètmein", 4, [5u8; 16]).unwrap());
    vec![
        ("pbkdf2_sha256", pbkdf2("pbkdf2_sha256", "lètmein", "seasalt"), "lètmein"),
        ("pbkdf2_sha1", pbkdf2("pbkdf2_sha1", "lètmein", "seasalt2"), "lètmein"),
        ("argon2", "argon2$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q".into(), "secret"),
        ("bcrypt_sha256", bcrypt_sha256, "lètmein"),
        ("bcrypt", bcrypt, "lètmein"),
        ("md5", "md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3".into(), "lètmein"),
    ]
}

pub async fn stored_hash(db: &DatabaseConnection, email: &str) -> String {
    let sql = format!("SELECT password_hash FROM users WHERE email = '{email}'");
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get::<String>("", "password_hash").unwrap()
}

pub async fn set_hash(db: &DatabaseConnection, email: &str, hash: &str) {
    let sql = format!("UPDATE users SET password_hash = '{hash}' WHERE email = '{email}'");
    db.execute_unprepared(&sql).await.unwrap();
}

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest { email: email.into(), password: password.into(), client: None }
}

async fn every_django_hash_kind_logs_in_with_its_password_and_is_rehashed_once(mut app: TestApp) {
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    for (kind, hash, password) in django_hashes() {
        let email = format!("{kind}@example.com");
        verified_user(&mut app, &email).await;
        set_hash(&db, &email, &hash).await;

        let wrong = app.client.login(login(&email, "not the password")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated, "{kind}");
        assert_eq!(stored_hash(&db, &email).await, hash, "{kind}: a failed login changes nothing");

        app.client.login(login(&email, password)).await.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let upgraded = stored_hash(&db, &email).await;
        assert!(upgraded.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{kind}: {upgraded}");

        // The new hash verifies the same password, and is kept from now on.
        app.client.login(login(&email, password)).await.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(stored_hash(&db, &email).await, upgraded, "{kind}");
        let wrong = app.client.login(login(&email, "not the password")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated, "{kind}");
    }
}

async fn an_unusable_django_password_is_answered_like_a_wrong_one(mut app: TestApp) {
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    verified_user(&mut app, "unusable@example.com").await;
    set_hash(&db, "unusable@example.com", "!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH").await;
    let unusable = app.client.login(login("unusable@example.com", "!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH")).await;
    let unknown = app.client.login(login("nobody@example.com", "whatever it is")).await;
    let (unusable, unknown) = (unusable.unwrap_err(), unknown.unwrap_err());
    assert_eq!((unusable.code(), unusable.message()), (unknown.code(), unknown.message()));
    assert_eq!(unusable.code(), Code::Unauthenticated);
}
