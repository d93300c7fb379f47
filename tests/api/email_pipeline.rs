use std::time::Duration;

use futures_util::StreamExt;
use identity::{
    grpc::proto::{LoginRequest, SignUpRequest, VerifyEmailRequest},
    infrastructure::rabbitmq::{DEAD_LETTER_REASON_HEADER, string_header},
};
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicConsumeOptions, BasicGetOptions},
    types::FieldTable,
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use testkit::{free_port, on_both_databases};

use crate::{
    helpers::{Backend, STRONG_PASSWORD, sign_up_request},
    pipeline_helpers::{
        Names, Pipeline, SENDGRID_KEY, amqp_url, broker_available, recipient_of, sendgrid_accepting, start_mailer,
        start_server, token_in_request,
    },
    tcp_proxy::TcpProxy,
};

on_both_databases!(
    signup_to_sendgrid_to_verify_to_login,
    an_email_accepted_while_the_broker_was_down_arrives_once_it_is_back,
    sendgrid_server_errors_are_retried_until_accepted,
    sendgrid_rate_limits_are_honoured,
    sendgrid_refusals_are_dead_lettered_without_retry,
    a_message_redelivered_after_a_crash_sends_no_second_email,
    a_burst_of_two_hundred_signups_gives_two_hundred_emails,
);

async fn signup_to_sendgrid_to_verify_to_login(backend: Backend) {
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid_accepting().await).await else {
        return;
    };
    let request = SignUpRequest { display_name: "Ada".into(), ..sign_up_request("Ada@Example.com") };
    pipeline.app.client.sign_up(request).await.unwrap();

    let requests = pipeline.wait_for_requests(1).await;
    let sent = &requests[0];
    assert_eq!(sent.headers.get("authorization").unwrap(), &format!("Bearer {SENDGRID_KEY}"));
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["from"]["email"], "no-reply@identity.test");
    assert_eq!(body["personalizations"][0]["to"][0]["email"], "ada@example.com");
    assert_eq!(body["subject"], "Confirm your email address");
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert_eq!(body["content"][1]["type"], "text/html");
    for part in 0..2 {
        let value = body["content"][part]["value"].as_str().unwrap();
        assert!(value.contains("https://app.example/verify?token="), "{value}");
        assert!(value.contains("Hello ada,"), "unverified, so greeted by the address: {value}");
    }

    let token = token_in_request(sent);
    pipeline.app.client.verify_email(VerifyEmailRequest { token }).await.unwrap();
    let login = LoginRequest { email: "ada@example.com".into(), password: STRONG_PASSWORD.into(), client: None };
    pipeline.app.client.login(login).await.unwrap();
    pipeline.stop_mailer().await;
    assert_eq!(pipeline.sendgrid_requests().await.len(), 1);
}

async fn an_email_accepted_while_the_broker_was_down_arrives_once_it_is_back(backend: Backend) {
    if !broker_available().await {
        return;
    }
    // The server reaches RabbitMQ through a port where nothing listens yet.
    let names = Names::fresh();
    let port = free_port().unwrap();
    let Some(mut app) = start_server(backend, &names, &format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).await else {
        return;
    };
    let sendgrid = sendgrid_accepting().await;
    let (stop, _task, _) = start_mailer(&app, &names, &sendgrid).await;

    app.client.sign_up(sign_up_request("patient@example.com")).await.expect("signup answers OK without a broker");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sendgrid.received_requests().await.unwrap().is_empty());

    // The broker "comes back": the relay reconnects and publishes the waiting event.
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let _proxy = TcpProxy::start(port, broker).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sendgrid.received_requests().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the email never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests = sendgrid.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "exactly once");
    assert_eq!(recipient_of(&requests[0]), "patient@example.com");
    stop.cancel();
}

async fn sendgrid_server_errors_are_retried_until_accepted(backend: Backend) {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&sendgrid)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&sendgrid)
        .await;
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid).await else {
        return;
    };
    pipeline.app.client.sign_up(sign_up_request("retry@example.com")).await.unwrap();

    let requests = pipeline.wait_for_requests(3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pipeline.stop_mailer().await;
    let requests_after = pipeline.sendgrid_requests().await;
    assert_eq!(requests_after.len(), 3, "two failures, then one accepted email");
    assert_eq!(token_in_request(&requests[0]), token_in_request(&requests[2]), "the same email, retried");
    assert_eq!(dead_letters(&pipeline.names).await, 0);
}

async fn sendgrid_rate_limits_are_honoured(backend: Backend) {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .up_to_n_times(1)
        .mount(&sendgrid)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&sendgrid)
        .await;
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid).await else {
        return;
    };
    pipeline.app.client.sign_up(sign_up_request("busy@example.com")).await.unwrap();

    pipeline.wait_for_requests(1).await;
    let refused_at = tokio::time::Instant::now();
    pipeline.wait_for_requests(2).await;
    // A behavioural bound, not a speed one: the retry waited for Retry-After
    // (the base backoff here is 50 ms).
    assert!(refused_at.elapsed() >= Duration::from_millis(1800), "retried after {:?}", refused_at.elapsed());
    pipeline.stop_mailer().await;
    assert_eq!(pipeline.sendgrid_requests().await.len(), 2);
}

async fn sendgrid_refusals_are_dead_lettered_without_retry(backend: Backend) {
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(400).set_body_string(r#"{"errors":[{"message":"bad from"}]}"#))
        .mount(&sendgrid)
        .await;
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid).await else {
        return;
    };
    pipeline.app.client.sign_up(sign_up_request("refused@example.com")).await.unwrap();
    pipeline.wait_for_requests(1).await;

    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let got = channel
            .basic_get(pipeline.names.topology.dead_letter_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if let Some(message) = got {
            break message;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing was dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = string_header(&dead.delivery.properties, DEAD_LETTER_REASON_HEADER).unwrap();
    assert!(reason.contains("400"), "{reason}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    pipeline.stop_mailer().await;
    assert_eq!(pipeline.sendgrid_requests().await.len(), 1, "a 400 is never retried");
    let _ = connection.close(200, "done".into()).await;
}

async fn a_message_redelivered_after_a_crash_sends_no_second_email(backend: Backend) {
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid_accepting().await).await else {
        return;
    };
    // Stand in for a mailer that dies after the provider accepted the email but
    // before it acknowledged the message: take the message ourselves, run the
    // mailer's handler on it, and drop the connection without acking.
    pipeline.stop_mailer().await;
    pipeline.app.client.sign_up(sign_up_request("crash@example.com")).await.unwrap();

    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            pipeline.names.topology.queue.as_str().into(),
            "crashing-mailer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery =
        tokio::time::timeout(Duration::from_secs(20), consumer.next()).await.expect("a message").unwrap().unwrap();
    let settings = crate::pipeline_helpers::mailer_settings(&pipeline.app, &pipeline.names, &pipeline.sendgrid);
    let handler = crashing_handler(&settings).await;
    let event =
        identity::infrastructure::outbox::payload::decode("user.verification_email_requested", &delivery.data).unwrap();
    let disposition = handler.execute(&event, 1).await;
    assert_eq!(disposition, identity::application::Disposition::Delivered { was_duplicate: false });
    assert_eq!(pipeline.sendgrid_requests().await.len(), 1);
    drop(consumer);
    connection.close(320, "simulated crash".into()).await.unwrap();

    // The real mailer gets the redelivered message and must not send again.
    pipeline.start_mailer().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pipeline.stop_mailer().await;
    assert_eq!(pipeline.sendgrid_requests().await.len(), 1, "no second email");
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let leftover = channel
        .basic_get(pipeline.names.topology.queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(leftover.is_none(), "the redelivered message was acknowledged");
    let _ = connection.close(200, "done".into()).await;
}

async fn crashing_handler(settings: &identity::config::MailerSettings) -> identity::application::HandleEmailEvent {
    use std::sync::Arc;
    let db = identity::infrastructure::sea_orm::connect(&settings.database).await.unwrap();
    identity::application::HandleEmailEvent {
        log: Arc::new(identity::infrastructure::sea_orm::SeaOrmDeliveryLog::new(db)),
        deliver: identity::application::DeliverEmail {
            sender: identity::infrastructure::email::build_sender(
                &settings.email,
                &std::sync::Arc::new(identity::observability::Metrics::new()),
            )
            .unwrap(),
        },
        expected: settings.expected.clone(),
        clock: Arc::new(identity::infrastructure::SystemClock),
        retry: settings.consumer.retry,
    }
}

async fn a_burst_of_two_hundred_signups_gives_two_hundred_emails(backend: Backend) {
    let Some(mut pipeline) = Pipeline::start(backend, sendgrid_accepting().await).await else {
        return;
    };
    let calls = (0..200).map(|i| {
        let mut client = pipeline.app.client.clone();
        tokio::spawn(async move { client.sign_up(sign_up_request(&format!("burst{i}@example.com"))).await })
    });
    for call in calls {
        call.await.unwrap().expect("every signup answers OK");
    }
    let requests = pipeline.wait_for_requests(200).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pipeline.stop_mailer().await;
    let requests_after = pipeline.sendgrid_requests().await;
    assert_eq!(requests_after.len(), 200, "none doubled");
    let recipients: std::collections::BTreeSet<String> = requests.iter().map(recipient_of).collect();
    assert_eq!(recipients.len(), 200, "none lost");
}

async fn dead_letters(names: &Names) -> u32 {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            names.topology.dead_letter_queue.as_str().into(),
            lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    queue.message_count()
}

on_both_databases!(the_mailer_is_not_serving_without_a_broker_and_serving_with_one);

async fn the_mailer_is_not_serving_without_a_broker_and_serving_with_one(backend: Backend) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    if !broker_available().await {
        return;
    }
    let names = Names::fresh();
    let Some(app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    let sendgrid = sendgrid_accepting().await;
    let port = free_port().unwrap();
    let mut settings = crate::pipeline_helpers::mailer_settings(&app, &names, &sendgrid);
    settings.amqp.url = secrecy::SecretString::from(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let mailer = identity::startup::Mailer::build(settings, identity::startup::Overrides::default()).await.unwrap();
    let stop = mailer.shutdown_token();
    let health_port = mailer.health_port();
    let task = tokio::spawn(mailer.run_until_stopped());

    let status = |service: &'static str| async move {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{health_port}")).unwrap();
        let mut client = HealthClient::new(channel.connect().await.unwrap());
        client.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status("identity.mailer").await, ServingStatus::NotServing);
    assert_eq!(status("").await, ServingStatus::NotServing);

    let _proxy = TcpProxy::start(port, "127.0.0.1:5672".parse().unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status("identity.mailer").await != ServingStatus::Serving {
        assert!(tokio::time::Instant::now() < deadline, "the mailer never became SERVING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
}
