use identity::grpc::proto::GetPublicKeysRequest;
use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use testkit::on_both_databases;

use crate::helpers::{TestApp, spawn_app};

on_both_databases!(
    builder = spawn_app;
    health_reports_serving_for_the_server_and_the_user_service,
    reflection_lists_the_services_in_both_versions
);

pub async fn health_status(app: &TestApp, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(app.channel().await);
    let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
    response.status()
}

async fn health_reports_serving_for_the_server_and_the_user_service(mut app: TestApp) {
    // The first readiness check runs as the server starts; wait for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while health_status(&app, "").await != ServingStatus::Serving {
        assert!(tokio::time::Instant::now() < deadline, "never became SERVING");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(health_status(&app, "identity.v1.UserService").await, ServingStatus::Serving);
    app.client.get_public_keys(GetPublicKeysRequest {}).await.unwrap();
}

async fn reflection_lists_the_services_in_both_versions(app: TestApp) {
    use tonic_reflection::pb::{v1, v1alpha};

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(Ok(response)) = responses.next().await else { panic!("no reflection answer") };
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"identity.v1.UserService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");

    // The rich error types resolve, so grpcurl can decode error details.
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "google.rpc.BadRequest".into(),
        )),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(Ok(response)) = responses.next().await else { panic!("no reflection answer") };
    assert!(
        matches!(
            response.message_response,
            Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "google.rpc.BadRequest is not registered: {:?}",
        response.message_response
    );
}
