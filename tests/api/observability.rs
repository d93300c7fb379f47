//! Metrics, logs and traces, observed from outside as an operator would.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use identity::grpc::proto::{
    ChangePasswordRequest, GetCurrentUserRequest, LoginRequest, LogoutRequest, RefreshSessionRequest, SignUpRequest,
    VerifyEmailRequest, user_service_client::UserServiceClient,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use tokio::io::AsyncReadExt;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::{
    helpers::{Backend, STRONG_PASSWORD, TestApp, spawn_app, verified_user, with_bearer},
    pipeline_helpers::{Names, amqp_url, broker_available, token_in_request},
};

async fn scrape(port: u16) -> String {
    identity::infrastructure::email::install_crypto_provider();
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert!(response.status().is_success());
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rpcs_by_method_and_code_and_logins_by_outcome() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(mut app) = spawn_app(backend).await else { continue };
        verified_user(&mut app, "ada@example.com").await;
        app.client
            .login(LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None })
            .await
            .unwrap();
        app.client
            .login(LoginRequest { email: "ada@example.com".into(), password: "wrong-password-1".into(), client: None })
            .await
            .unwrap_err();
        let text = scrape(metrics_port(&app)).await;
        for expected in [
            r#"identity_rpc_requests_total{method="SignUp",code="OK"} 1"#,
            r#"identity_rpc_requests_total{method="Login",code="UNAUTHENTICATED"} 1"#,
            r#"identity_login_attempts_total{outcome="success"} 1"#,
            r#"identity_login_attempts_total{outcome="bad_credentials"} 1"#,
            r#"identity_rpc_duration_seconds_bucket{"#,
            "identity_outbox_backlog ",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        identity::infrastructure::email::install_crypto_provider();
        let missing = reqwest::get(format!("http://127.0.0.1:{}/secrets", metrics_port(&app))).await.unwrap();
        assert_eq!(missing.status(), 404);
    }
}

/// Calls `path` with an empty message, as a scanner would; the server has no
/// such method, so the answer is an error (UNIMPLEMENTED).
async fn call_made_up_path(channel: tonic::transport::Channel, path: &str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path: http::uri::PathAndQuery = path.parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(tonic::Request::new(()), path, codec).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_share_one_unknown_metrics_bucket_so_metrics_stay_bounded() {
    let Some(mut app) = spawn_app(Backend::Sqlite).await else { return };
    let channel = app.channel().await;
    app.client.get_public_keys(identity::grpc::proto::GetPublicKeysRequest {}).await.unwrap();
    let status = call_made_up_path(channel.clone(), "/identity.v1.UserService/NoSuchMethod").await;
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    let before = scrape(metrics_port(&app)).await;

    let padding = "x".repeat(1000);
    for i in 0..300 {
        let path = format!("/made.up.Service{i}{padding}/Method{i}{padding}");
        assert_eq!(call_made_up_path(channel.clone(), &path).await.code(), tonic::Code::Unimplemented);
    }
    let after = scrape(metrics_port(&app)).await;

    assert!(!after.contains("NoSuchMethod") && !after.contains("made.up") && !after.contains(&padding));
    assert!(after.contains(r#"identity_rpc_requests_total{method="unknown",code="UNIMPLEMENTED"} 301"#), "{after}");
    assert!(after.contains(r#"identity_rpc_requests_total{method="GetPublicKeys",code="OK"} 1"#), "{after}");
    // Only counts changed: a few digits, not a series per path.
    assert!(after.len() < before.len() + 200, "grew from {} to {} bytes", before.len(), after.len());
}

fn metrics_port(app: &TestApp) -> u16 {
    app.metrics_port.expect("the test server serves metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_request_id_is_echoed_and_one_is_made_when_absent() {
    let Some(mut app) = spawn_app(Backend::Sqlite).await else { return };
    let mut request = tonic::Request::new(identity::grpc::proto::GetPublicKeysRequest {});
    request.metadata_mut().insert("x-request-id", "req-42-abc".parse().unwrap());
    let response = app.client.get_public_keys(request).await.unwrap();
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "req-42-abc");
    let response = app.client.get_public_keys(identity::grpc::proto::GetPublicKeysRequest {}).await.unwrap();
    let generated = response.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::try_parse(generated).is_ok(), "{generated}");
    let status = app.client.login(LoginRequest::default()).await.unwrap_err();
    assert!(status.metadata().get("x-request-id").is_some(), "errors carry it too");
}

/// Runs the real server binary with SendGrid as provider, drives a full account
/// life through it, and reads every line it logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_signup_and_login_logs_no_password_token_or_key() {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(202)).mount(&sendgrid).await;
    let database = std::env::temp_dir().join(format!("identity-logs-{}.db", uuid::Uuid::new_v4().simple()));
    let (secret_key, _) = identity::infrastructure::PasetoTokens::generate_secret_key().unwrap();
    let secret_key = secrecy::ExposeSecret::expose_secret(&secret_key).to_owned();
    let port = testkit::free_port().unwrap();
    let api_key = "SG.very-secret-sendgrid-key";
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_identity-server"))
        .env("IDENTITY_GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("IDENTITY_DATABASE_URL", format!("sqlite://{}?mode=rwc", database.display()))
        .env("IDENTITY_TOKEN_SECRET_KEY", &secret_key)
        .env("IDENTITY_EMAIL_PROVIDER", "sendgrid")
        .env("SENDGRID_API_KEY", api_key)
        .env("SENDGRID_BASE_URL", sendgrid.uri())
        .env("IDENTITY_ARGON2_M_COST", "256")
        .env("IDENTITY_ARGON2_T_COST", "1")
        .env("IDENTITY_METRICS_ADDR", "off")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut client = loop {
        if let Ok(client) = UserServiceClient::connect(endpoint.clone()).await {
            break client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let new_password = "saffron-glacier-piano-88";
    let mut secrets = vec![STRONG_PASSWORD.to_owned(), new_password.to_owned(), api_key.to_owned(), secret_key.clone()];
    client
        .sign_up(SignUpRequest {
            email: "ada@example.com".into(),
            password: STRONG_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sendgrid.received_requests().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no email");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let verification = token_in_request(&sendgrid.received_requests().await.unwrap()[0]);
    secrets.push(verification.clone());
    client.verify_email(VerifyEmailRequest { token: verification }).await.unwrap();
    let login = client
        .login(LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None })
        .await
        .unwrap()
        .into_inner();
    secrets.extend([login.access_token.clone(), login.refresh_token.clone()]);
    client.get_current_user(with_bearer(&login.access_token, GetCurrentUserRequest {})).await.unwrap();
    let refreshed = client
        .refresh_session(RefreshSessionRequest { refresh_token: login.refresh_token.clone(), client: None })
        .await
        .unwrap()
        .into_inner();
    secrets.extend([refreshed.access_token.clone(), refreshed.refresh_token.clone()]);
    let change = ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: new_password.into() };
    client.change_password(with_bearer(&refreshed.access_token, change)).await.unwrap();
    client.logout(LogoutRequest { refresh_token: refreshed.refresh_token.clone() }).await.unwrap();
    // A failing login must not log the attempted password either.
    client
        .login(LoginRequest { email: "ada@example.com".into(), password: "wrong-but-secret-9".into(), client: None })
        .await
        .unwrap_err();
    secrets.push("wrong-but-secret-9".into());

    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap();
    // SAFETY-free termination: the kill binary sends SIGTERM, as Kubernetes would.
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).await.unwrap();
    let _ = std::fs::remove_file(&database);

    assert!(stdout.lines().count() > 20, "expected a real log:\n{stdout}");
    for secret in &secrets {
        assert!(!stdout.contains(secret.as_str()), "a secret leaked into the log: {}…", &secret[..8.min(secret.len())]);
    }
    // The k4.secret prefix never appears, nor any part of a bearer header.
    assert!(!stdout.contains("k4.secret."));
    assert!(!stdout.contains("Bearer "));
    let mut saw_rpc_line = false;
    for line in stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(value.get(key).is_some(), "{key} missing in {line}");
        }
        if value["message"] == "rpc finished" && value["rpc.method"] == "Login" {
            assert!(value.get("request_id").is_some() && value.get("latency_ms").is_some(), "{line}");
            saw_rpc_line = true;
        }
    }
    assert!(saw_rpc_line, "span fields are flattened onto the rpc line");
}

/// An in-process OTLP collector: a tonic server implementing the trace service.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signup_is_one_trace_from_the_caller_through_rabbitmq_to_sendgrid() {
    if !broker_available().await {
        return;
    }
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    // This test process is its own (nextest runs one test per process), so the
    // global subscriber with its OTLP layer is ours alone.
    let guard = identity::telemetry::init(
        identity::telemetry::LogFormat::Json,
        Some(identity::telemetry::OtlpSettings {
            endpoint: collector_endpoint.clone(),
            service_name: "identity-server".into(),
        }),
    )
    .unwrap();

    let names = Names::fresh();
    let Some(mut app) = crate::pipeline_helpers::start_server(Backend::Postgres, &names, &amqp_url()).await else {
        return;
    };
    let sendgrid = crate::pipeline_helpers::sendgrid_accepting().await;
    let mut mailer = tokio::process::Command::new(env!("CARGO_BIN_EXE_identity-mailer"))
        .env("IDENTITY_AMQP_URL", amqp_url())
        .env("IDENTITY_AMQP_EXCHANGE", &names.topology.exchange)
        .env("IDENTITY_MAILER_QUEUE", &names.topology.queue)
        .env("IDENTITY_DATABASE_URL", app.database.url())
        .env("IDENTITY_AUTO_MIGRATE", "false")
        .env("IDENTITY_EMAIL_PROVIDER", "sendgrid")
        .env("SENDGRID_API_KEY", "SG.trace-test")
        .env("SENDGRID_BASE_URL", sendgrid.uri())
        .env("IDENTITY_VERIFICATION_URL", crate::helpers::VERIFICATION_URL)
        .env("IDENTITY_MAILER_HEALTH_ADDR", "127.0.0.1:0")
        .env("IDENTITY_METRICS_ADDR", "off")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_endpoint)
        .env("OTEL_SERVICE_NAME", "identity-mailer")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The calling service's own trace: its span id becomes our server span's parent.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(crate::helpers::sign_up_request("traced@example.com"));
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-{caller_span}-01").parse().unwrap());
    app.client.sign_up(request).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sendgrid.received_requests().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the email never reached SendGrid");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Flush both processes: the mailer by SIGTERM, the server by dropping the guard.
    std::process::Command::new("kill").args(["-TERM", &mailer.id().unwrap().to_string()]).status().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), mailer.wait()).await;
    drop(guard);
    let find = |spans: &[(String, Span)], name: &str| {
        spans.iter().find(|(_, s)| s.name == name).map(|(svc, s)| (svc.clone(), s.clone()))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let wanted = ["identity.v1.UserService/SignUp", "user.verification_email_requested publish", "POST"];
        if wanted.iter().all(|name| find(&spans, name).is_some())
            && spans.iter().any(|(_, s)| s.name.ends_with(" process"))
        {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans missing: {:?}",
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let (server_service, rpc) = spans
        .iter()
        .find(|(_, s)| s.name == "identity.v1.UserService/SignUp" && hex::encode(&s.trace_id) == trace_id)
        .cloned()
        .expect("the server's SignUp span, in the caller's trace");
    let (mailer_service, process) = spans.iter().find(|(_, s)| s.name.ends_with(" process")).cloned().unwrap();
    // The relay may have tried more than once (the mailer's queue may not have
    // existed yet); the message that arrived came from the attempt that succeeded.
    let publish = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "user.verification_email_requested publish" && s.span_id == process.parent_span_id)
        .cloned()
        .expect("the mailer continues one of the relay's publish spans");
    let (_, post) = find(&spans, "POST").unwrap();
    for span in [&rpc, &publish, &process, &post] {
        assert_eq!(hex::encode(&span.trace_id), trace_id, "{} is not in the caller's trace", span.name);
    }
    assert!(server_service.contains("identity-server") && mailer_service.contains("identity-mailer"));
    assert_eq!(hex::encode(&rpc.parent_span_id), caller_span, "the server span continues the caller's");
    // The tree: rpc → … → publish → process → … → POST.
    let parent_of = |span: &Span| spans.iter().find(|(_, s)| s.span_id == span.parent_span_id).map(|(_, s)| s.clone());
    let mut ancestor = parent_of(&publish);
    while let Some(span) = ancestor.clone() {
        if span.span_id == rpc.span_id {
            break;
        }
        ancestor = parent_of(&span);
    }
    assert!(ancestor.is_some(), "the publish span descends from the server's rpc span");
    let mut ancestor = parent_of(&post);
    while let Some(span) = ancestor.clone() {
        if span.span_id == process.span_id {
            break;
        }
        ancestor = parent_of(&span);
    }
    assert!(ancestor.is_some(), "the provider call descends from the mailer's process span");
    let status = post.attributes.iter().find(|a| a.key == "http.response.status_code").expect("status attribute");
    assert!(format!("{:?}", status.value).contains("202"), "{:?}", status.value);
}

const CONSOLE_WARNING: &str = "IDENTITY_EMAIL_PROVIDER=console: every verification and password-reset link is written to the log; for development only";

fn console_warnings(log: &[String]) -> usize {
    log.iter()
        .filter(|line| crate::process_logs::message_of(line).as_deref() == Some(CONSOLE_WARNING))
        .inspect(|line| assert!(line.contains(r#""level":"WARN""#), "{line}"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_warns_once_at_start_up_that_the_console_provider_logs_links() {
    use crate::process_logs::{LoggedProcess, TempDatabase, server_command};

    let database = TempDatabase::new();
    let port = testkit::free_port().unwrap();
    let mut console = LoggedProcess::start(server_command(port, &database.0, &[]));
    console.until_message("identity server listening").await;
    assert_eq!(console_warnings(&console.stop().await), 1);

    let port = testkit::free_port().unwrap();
    let sendgrid = [("IDENTITY_EMAIL_PROVIDER", "sendgrid"), ("SENDGRID_API_KEY", "SG.not-used")];
    let mut sendgrid = LoggedProcess::start(server_command(port, &database.0, &sendgrid));
    sendgrid.until_message("identity server listening").await;
    assert_eq!(console_warnings(&sendgrid.stop().await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailer_warns_once_at_start_up_that_the_console_provider_logs_links() {
    use crate::process_logs::{LoggedProcess, TempDatabase};

    let database = TempDatabase::new();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_identity-mailer"));
    command
        // Nothing listens there: the mailer starts anyway and keeps retrying.
        .env("IDENTITY_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("IDENTITY_DATABASE_URL", format!("sqlite://{}?mode=rwc", database.0.display()))
        .env("IDENTITY_MAILER_HEALTH_ADDR", "127.0.0.1:0")
        .env("IDENTITY_METRICS_ADDR", "off")
        .env("RUST_LOG", "info");
    let mut mailer = LoggedProcess::start(command);
    mailer.until_message("identity mailer starting").await;
    assert_eq!(console_warnings(&mailer.stop().await), 1);
}
