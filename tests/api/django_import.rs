//! `identity-server import-django`: a Django-shaped database (the seed's
//! `user` table and Django's default `auth_user`, on SQLite and on
//! PostgreSQL) imported into the service's database (either backend), then
//! logged into through the real server with the original passwords.

use identity::{
    grpc::proto::{
        GetUserRequest, LoginRequest, RequestPasswordResetRequest, UserStatus, admin_service_client::AdminServiceClient,
    },
    import::{ImportArgs, import},
};
use sea_orm::{ConnectionTrait, Database, Statement};
use sha2::{Digest, Sha256};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use testkit::on_both_databases;

use crate::{
    django_passwords::{django_hashes, stored_hash},
    helpers::{Backend, TestApp, TestDatabase, spawn_app_with, test_settings, wait_for_email},
};

const ADMIN_KEY: &str = "test-admin-key-0123456789";

on_both_databases!(
    builder = admin_app;
    the_seeds_users_keep_their_ids_status_and_passwords_from_either_source,
    auth_user_rows_get_new_ids_and_keep_theirs_as_legacy_id,
    a_second_run_imports_only_new_rows_and_overwrites_nothing,
    a_dry_run_reports_what_a_run_would_do_and_writes_nothing,
);

async fn admin_app(backend: Backend) -> Option<TestApp> {
    let hash: String = hex::encode(Sha256::digest(ADMIN_KEY.as_bytes()));
    spawn_app_with(backend, move |s| s.server.admin_api_key_hashes = vec![hash]).await
}

fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", ADMIN_KEY.parse().unwrap());
    request
}

/// One row of the seed's `user` table.
struct SeedRow {
    id: uuid::Uuid,
    email: String,
    password: String,
    status: &'static str,
    is_active: bool,
    is_deleted: bool,
}

fn seed_row(email: &str, password: &str, status: &'static str) -> SeedRow {
    SeedRow {
        id: uuid::Uuid::new_v4(),
        email: email.into(),
        password: password.into(),
        status,
        is_active: true,
        is_deleted: false,
    }
}

const UNUSABLE: &str = "!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH";

/// Every status and hash kind, and each reason to skip a row.
fn seed_rows() -> Vec<SeedRow> {
    let mut rows: Vec<SeedRow> = django_hashes()
        .into_iter()
        .map(|(kind, hash, _)| seed_row(&format!("{kind}@example.com"), &hash, "verified"))
        .collect();
    let md5 = django_hashes().into_iter().find(|(kind, _, _)| *kind == "md5").unwrap().1;
    rows.push(seed_row("registered@example.com", &md5, "registered"));
    rows.push(seed_row("activated@example.com", &md5, "activated"));
    rows.push(seed_row("deactivated@example.com", &md5, "deactivated"));
    rows.push(SeedRow { is_active: false, ..seed_row("inactive@example.com", &md5, "verified") });
    rows.push(SeedRow { is_deleted: true, ..seed_row("deleted@example.com", &md5, "verified") });
    rows.push(seed_row("not-an-email", &md5, "verified"));
    // Django compares emails case-sensitively; the service does not.
    rows.push(seed_row("MD5@Example.com", &md5, "verified"));
    rows.push(seed_row("unusable@example.com", UNUSABLE, "verified"));
    rows.push(seed_row("scrypt@example.com", "scrypt$16384$salt$8$1$aGFzaA==", "verified"));
    rows
}

/// A database laid out as Django's migrations lay it out on each backend: the
/// seed's custom `user` model (uuid, or char(32) on SQLite) and `auth_user`
/// (integer keys).
async fn django_source(backend: Backend, seed: &[SeedRow]) -> TestDatabase {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let source = TestDatabase::create(backend, "django", &id, &testkit::postgres_admin_url()).await.unwrap();
    let db = Database::connect(source.url().as_str()).await.unwrap();
    let (uuid, boolean, timestamp) = match backend {
        Backend::Sqlite => ("char(32)", "bool", "datetime"),
        Backend::Postgres => ("uuid", "boolean", "timestamp with time zone"),
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE \"user\" (id {uuid} NOT NULL PRIMARY KEY, password varchar(128) NOT NULL, \
         last_login {timestamp} NULL, is_superuser {boolean} NOT NULL, username varchar(150) NULL, \
         first_name varchar(150) NOT NULL, last_name varchar(150) NOT NULL, email varchar(254) NOT NULL UNIQUE, \
         is_staff {boolean} NOT NULL, is_active {boolean} NOT NULL, date_joined {timestamp} NOT NULL, \
         status varchar(20) NOT NULL, is_deleted {boolean} NOT NULL, created_at {timestamp} NOT NULL, \
         updated_at {timestamp} NOT NULL)"
    ))
    .await
    .unwrap();
    let (yes, no) = match backend {
        Backend::Sqlite => ("1", "0"),
        Backend::Postgres => ("true", "false"),
    };
    let flag = |b: bool| if b { yes } else { no };
    for row in seed {
        let id = match backend {
            Backend::Sqlite => row.id.simple().to_string(),
            Backend::Postgres => row.id.hyphenated().to_string(),
        };
        let joined = match backend {
            Backend::Sqlite => "2023-04-05 06:07:08.123456",
            Backend::Postgres => "2023-04-05 06:07:08.123456+00",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO \"user\" VALUES ('{id}', '{password}', NULL, {no}, NULL, 'Ada', 'Lovelace', '{email}', {no}, \
             {active}, '{joined}', '{status}', {deleted}, '{joined}', '{joined}')",
            password = row.password,
            email = row.email,
            active = flag(row.is_active),
            status = row.status,
            deleted = flag(row.is_deleted),
        ))
        .await
        .unwrap();
    }
    let serial = match backend {
        Backend::Sqlite => "integer NOT NULL PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "serial PRIMARY KEY",
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE auth_user (id {serial}, password varchar(128) NOT NULL, last_login {timestamp} NULL, \
         is_superuser {boolean} NOT NULL, username varchar(150) NOT NULL UNIQUE, first_name varchar(150) NOT NULL, \
         last_name varchar(150) NOT NULL, email varchar(254) NOT NULL, is_staff {boolean} NOT NULL, \
         is_active {boolean} NOT NULL, date_joined {timestamp} NOT NULL)"
    ))
    .await
    .unwrap();
    // Twelve rows, so that integer keys 10 to 12 come after 2 to 9 (and the
    // paging, in batches, must compare them as numbers).
    let md5 = django_hashes().into_iter().find(|(kind, _, _)| *kind == "md5").unwrap().1;
    for n in 1..=12 {
        db.execute_unprepared(&format!(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, \
             is_active, date_joined) VALUES ('{md5}', {no}, 'user{n}', '', '', 'user{n}@example.com', {no}, {yes}, \
             '2023-04-05 06:07:08')"
        ))
        .await
        .unwrap();
    }
    db.close().await.unwrap();
    source
}

fn args(source: &TestDatabase, table: &str) -> ImportArgs {
    ImportArgs {
        source: source.url().replace("?mode=rwc", ""),
        table: table.into(),
        assume_verified: false,
        dry_run: false,
        report: None,
    }
}

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest { email: email.into(), password: password.into(), client: None }
}

const SEED_SUMMARY: &str =
    "imported 12, skipped 3 (already present 0, deleted 1, invalid email 1, duplicate email 1, invalid id 0)";

async fn the_seeds_users_keep_their_ids_status_and_passwords_from_either_source(mut app: TestApp) {
    let seed = seed_rows();
    // PostgreSQL first, then the same rows from SQLite: each source inserts in
    // one of the two tests of this file that read both.
    for (run, source_backend) in [Backend::Postgres, Backend::Sqlite].into_iter().enumerate() {
        let source = django_source(source_backend, &seed).await;
        let settings = test_settings(&app.database.url());
        if run == 0 {
            let report = std::env::temp_dir().join(format!("identity-report-{}.jsonl", uuid::Uuid::new_v4()));
            let summary =
                import(&settings, &ImportArgs { report: Some(report.clone()), ..args(&source, "user") }).await.unwrap();
            assert_eq!(summary.to_string(), SEED_SUMMARY);
            let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            let _ = std::fs::remove_file(&report);
            let reasons: Vec<&str> = lines.iter().map(|l| l["reason"].as_str().unwrap()).collect();
            assert_eq!(reasons.len(), 3, "{lines:?}");
            for reason in ["deleted", "invalid_email", "duplicate_email"] {
                assert!(reasons.contains(&reason), "{lines:?}");
            }
            let deleted = seed.iter().find(|r| r.email == "deleted@example.com").unwrap();
            let is_deleted_row = |l: &serde_json::Value| {
                uuid::Uuid::parse_str(l["django_id"].as_str().unwrap()).ok() == Some(deleted.id)
            };
            assert!(lines.iter().any(|l| is_deleted_row(l) && l["reason"] == "deleted"), "{lines:?}");
        } else {
            // The same users again, from the other source: all present already.
            let summary = import(&settings, &args(&source, "user")).await.unwrap();
            assert_eq!(
                summary.to_string(),
                "imported 0, skipped 15 (already present 12, deleted 1, invalid email 1, duplicate email 1, invalid id 0)"
            );
        }
    }

    // Every hash kind logs in with the original password, then holds argon2id.
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let mut admin = AdminServiceClient::new(app.channel().await);
    for (kind, _, password) in django_hashes() {
        let email = format!("{kind}@example.com");
        let tokens = app.client.login(login(&email, password)).await.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert!(!tokens.into_inner().access_token.is_empty());
        assert!(stored_hash(&db, &email).await.starts_with("$argon2id$"), "{kind}");
    }
    // Ids are Django's; the names came along.
    // (Not the MD5 user: which of its two rows wins depends on their random ids.)
    let pbkdf2_row = seed.iter().find(|r| r.email == "pbkdf2_sha256@example.com").unwrap();
    let user_id = pbkdf2_row.id.hyphenated().to_string();
    let fetched = admin.get_user(keyed(GetUserRequest { user_id, ..Default::default() })).await;
    let fetched = fetched.unwrap().into_inner().user.unwrap();
    assert_eq!((fetched.first_name.as_str(), fetched.last_name.as_str()), ("Ada", "Lovelace"));
    assert_eq!(fetched.legacy_id, None, "a UUID key became the id");
    assert_eq!(fetched.status(), UserStatus::Active);
    assert_eq!(fetched.created_at.unwrap().seconds, 1_680_674_828, "date_joined became created_at");

    // Pending and disabled users prove their password, then learn their state.
    for (email, reason) in [
        ("registered@example.com", "EMAIL_NOT_VERIFIED"),
        ("activated@example.com", "EMAIL_NOT_VERIFIED"),
        ("deactivated@example.com", "ACCOUNT_DISABLED"),
        ("inactive@example.com", "ACCOUNT_DISABLED"),
    ] {
        let status = app.client.login(login(email, "lètmein")).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{email}");
        assert_eq!(status.get_error_details().error_info().expect("ErrorInfo").reason, reason, "{email}");
    }
    // A skipped row is not there.
    let status = app.client.login(login("deleted@example.com", "lètmein")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // No usable password (Django's unusable ones, formats not read here): a
    // wrong password's answer, and a reset link that works.
    for email in ["unusable@example.com", "scrypt@example.com"] {
        assert_eq!(stored_hash(&db, email).await, "!", "{email}: nothing of the original kept");
        let status = app.client.login(login(email, UNUSABLE)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{email}");
    }
    app.client
        .request_password_reset(RequestPasswordResetRequest { email: "unusable@example.com".into() })
        .await
        .unwrap();
    wait_for_email(&app, "unusable@example.com", "Reset your password").await;
    // The import itself sent nothing: the only email is that reset link.
    assert_eq!(app.emails.sent().len(), 1, "{:?}", app.emails.sent().iter().map(|e| &e.subject).collect::<Vec<_>>());
}

async fn auth_user_rows_get_new_ids_and_keep_theirs_as_legacy_id(mut app: TestApp) {
    for source_backend in [Backend::Sqlite, Backend::Postgres] {
        let source = django_source(source_backend, &[]).await;
        let settings = test_settings(&app.database.url());
        let summary = import(&settings, &args(&source, "auth_user")).await.unwrap();
        match source_backend {
            Backend::Sqlite => assert_eq!(summary.imported, 12, "{summary}"),
            // Django's ids again (from the other source): already present by legacy_id.
            Backend::Postgres => assert_eq!((summary.imported, summary.already_present), (0, 12), "{summary}"),
        }
    }
    let mut admin = AdminServiceClient::new(app.channel().await);
    for n in [2, 10, 12] {
        let by_legacy = admin.get_user(keyed(GetUserRequest { legacy_id: n.to_string(), ..Default::default() })).await;
        let user = by_legacy.unwrap().into_inner().user.unwrap();
        assert_eq!(user.email, format!("user{n}@example.com"));
        assert_eq!(user.legacy_id.as_deref(), Some(n.to_string().as_str()));
        // No status column and no --assume-verified: pending verification.
        assert_eq!(user.status(), UserStatus::PendingVerification);
        assert!(uuid::Uuid::parse_str(&user.id).is_ok());
    }
    let unknown = admin.get_user(keyed(GetUserRequest { legacy_id: "99".into(), ..Default::default() })).await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let both = GetUserRequest { user_id: uuid::Uuid::nil().to_string(), legacy_id: "2".into() };
    assert_eq!(admin.get_user(keyed(both)).await.unwrap_err().code(), Code::InvalidArgument);

    // A pending user proves their password, then learns they must verify.
    let status = app.client.login(login("user3@example.com", "lètmein")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn a_second_run_imports_only_new_rows_and_overwrites_nothing(mut app: TestApp) {
    let source = django_source(Backend::Sqlite, &seed_rows()).await;
    let settings = test_settings(&app.database.url());
    assert_eq!(import(&settings, &args(&source, "user")).await.unwrap().to_string(), SEED_SUMMARY);
    // A login rehashes one password: the next run must not bring the Django hash back.
    app.client.login(login("md5@example.com", "lètmein")).await.unwrap();
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let rehashed = stored_hash(&db, "md5@example.com").await;
    assert!(rehashed.starts_with("$argon2id$"));
    // The login wrote its session.created event, which the server's relay
    // settles with a write of its own. The import is a second writer on the
    // same SQLite file: a write between its transaction's read and write
    // would fail it (SQLITE_BUSY_SNAPSHOT, code 517), so let the relay finish.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pending = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the relay never settled the login's event");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // One new row in Django since.
    let source_db = Database::connect(source.url().as_str()).await.unwrap();
    source_db
        .execute_unprepared(&format!(
            "INSERT INTO \"user\" VALUES ('{}', 'md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3', NULL, 0, NULL, '', '', \
             'newcomer@example.com', 0, 1, '2024-01-01 00:00:00', 'verified', 0, '2024-01-01 00:00:00', \
             '2024-01-01 00:00:00')",
            uuid::Uuid::new_v4().simple()
        ))
        .await
        .unwrap();
    source_db.close().await.unwrap();
    let again = import(&settings, &args(&source, "user")).await.unwrap();
    assert_eq!(
        again.to_string(),
        "imported 1, skipped 15 (already present 12, deleted 1, invalid email 1, duplicate email 1, invalid id 0)"
    );
    assert_eq!(stored_hash(&db, "md5@example.com").await, rehashed);
    app.client.login(login("newcomer@example.com", "lètmein")).await.unwrap();
}

async fn a_dry_run_reports_what_a_run_would_do_and_writes_nothing(app: TestApp) {
    let source = django_source(Backend::Sqlite, &seed_rows()).await;
    let settings = test_settings(&app.database.url());
    let dry = import(&settings, &ImportArgs { dry_run: true, ..args(&source, "user") }).await.unwrap();
    assert_eq!(dry.to_string(), SEED_SUMMARY);
    let db = Database::connect(app.database.url().as_str()).await.unwrap();
    let count = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM users"))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(count, 0);
    assert_eq!(import(&settings, &args(&source, "user")).await.unwrap().to_string(), SEED_SUMMARY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_or_column_is_one_line_naming_it() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else { return };
    let source = django_source(Backend::Sqlite, &[]).await;
    let db = Database::connect(source.url().as_str()).await.unwrap();
    db.execute_unprepared("CREATE TABLE no_password (id integer PRIMARY KEY, email text)").await.unwrap();
    db.close().await.unwrap();
    let settings = test_settings(&app.database.url());
    for (table, expected) in [
        ("accounts", "table \"accounts\" not found in the source database"),
        ("no_password", "table \"no_password\" has no column \"password\""),
    ] {
        let error = format!("{:#}", import(&settings, &args(&source, table)).await.unwrap_err());
        assert_eq!(error, expected);
    }
    let unreachable = ImportArgs { source: "sqlite:///nonexistent/django.sqlite3".into(), ..args(&source, "user") };
    let error = format!("{:#}", import(&settings, &unreachable).await.unwrap_err());
    assert!(error.starts_with("cannot connect to the source database") && !error.contains('\n'), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_into_a_database_never_migrated_says_to_migrate_first_and_writes_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let Ok(service) = TestDatabase::create(backend, "dryrun", &id, &testkit::postgres_admin_url()).await else {
            assert!(std::env::var_os("CI").is_none(), "PostgreSQL is required in CI");
            continue;
        };
        let source = django_source(Backend::Sqlite, &seed_rows()).await;
        let settings = test_settings(&service.url());
        let dry = ImportArgs { dry_run: true, ..args(&source, "user") };
        let error = format!("{:#}", import(&settings, &dry).await.unwrap_err());
        assert!(error.contains("run `identity-server migrate` first") && !error.contains('\n'), "{error}");
        let db = Database::connect(service.url().as_str()).await.unwrap();
        let tables = match backend {
            Backend::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'",
            Backend::Postgres => "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
        };
        let count = db
            .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), tables))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(count, 0, "a dry run created no table");
    }
}
