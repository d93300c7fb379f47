//! The security notices of issue 14: each sent once for its change, each
//! switchable, and the new-device one only for a device new to its user.

use identity::grpc::proto::{
    ChangePasswordRequest, ClientInfo, LoginRequest, RequestPasswordResetRequest, ResetPasswordRequest,
};
use testkit::{Backend, on_both_databases};

use crate::helpers::{
    STRONG_PASSWORD, TestApp, emails_to, logged_in, spawn_app, spawn_app_with, token_in, verified_user, wait_for_email,
    with_bearer,
};

on_both_databases!(
    builder = spawn_app;
    a_password_change_and_a_password_reset_each_send_their_own_notice_once,
    new_device_notices_are_off_by_default,
);

on_both_databases!(
    builder = notices_off_app;
    switched_off_password_notices_are_not_sent,
);

on_both_databases!(
    builder = new_device_app;
    a_sign_in_from_a_new_device_is_noticed_once_and_a_known_device_never,
    concurrent_logins_from_one_new_device_send_one_notice,
);

const NEW_PASSWORD: &str = "saffron-glacier-piano-88";
const CHANGED: &str = "Your password was changed";
const RESET: &str = "Your password was reset";
const NEW_DEVICE: &str = "A sign-in from a new device";

async fn notices_off_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| s.notices.password_changed = false).await
}

async fn new_device_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| {
        s.notices.new_device = true;
        // The race below logs in more often, and more at once, than a person
        // would: attempts in flight count as failures until they succeed.
        s.limits.per_address = 0;
        s.limits.login_throttle_after = 100;
    })
    .await
}

async fn change_then_reset(app: &mut TestApp) {
    let (_, access, _) = logged_in(app, "ada@example.com").await;
    let change = ChangePasswordRequest { current_password: STRONG_PASSWORD.into(), new_password: NEW_PASSWORD.into() };
    app.client.change_password(with_bearer(&access, change)).await.unwrap();
    app.client.request_password_reset(RequestPasswordResetRequest { email: "ada@example.com".into() }).await.unwrap();
    let token = token_in(&wait_for_email(app, "ada@example.com", "Reset your password").await);
    let reset = ResetPasswordRequest { token, new_password: STRONG_PASSWORD.into() };
    app.client.reset_password(reset).await.unwrap();
}

async fn a_password_change_and_a_password_reset_each_send_their_own_notice_once(mut app: TestApp) {
    change_then_reset(&mut app).await;
    let reset = wait_for_email(&app, "ada@example.com", RESET).await;
    assert!(reset.text_body.contains("reset through an emailed link"), "{}", reset.text_body);
    app.emails.settle().await;
    assert_eq!(emails_to(&app, "ada@example.com", CHANGED).len(), 1);
    assert_eq!(emails_to(&app, "ada@example.com", RESET).len(), 1);
}

async fn switched_off_password_notices_are_not_sent(mut app: TestApp) {
    change_then_reset(&mut app).await;
    app.emails.settle().await;
    assert!(emails_to(&app, "ada@example.com", CHANGED).is_empty());
    assert!(emails_to(&app, "ada@example.com", RESET).is_empty());
}

fn login_from(user_agent: &str, ip_address: &str) -> LoginRequest {
    LoginRequest {
        email: "ada@example.com".into(),
        password: STRONG_PASSWORD.into(),
        client: Some(ClientInfo { user_agent: user_agent.into(), ip_address: ip_address.into() }),
    }
}

async fn new_device_notices_are_off_by_default(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    app.client.login(login_from("Firefox/133.0 (phone)", "203.0.113.9")).await.unwrap();
    app.client.login(login_from("Safari/18 (laptop)", "198.51.100.7")).await.unwrap();
    app.emails.settle().await;
    assert!(emails_to(&app, "ada@example.com", NEW_DEVICE).is_empty());
}

async fn a_sign_in_from_a_new_device_is_noticed_once_and_a_known_device_never(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    // The first remembered login is where the user starts, not a new device.
    app.client.login(login_from("Firefox/133.0 (phone)", "203.0.113.9")).await.unwrap();
    // The same phone elsewhere in its network is still the phone.
    app.client.login(login_from("Firefox/133.0 (phone)", "203.0.113.200")).await.unwrap();
    app.emails.settle().await;
    assert!(emails_to(&app, "ada@example.com", NEW_DEVICE).is_empty());

    app.client.login(login_from("Safari/18 (laptop)", "198.51.100.7")).await.unwrap();
    let notice = wait_for_email(&app, "ada@example.com", NEW_DEVICE).await;
    assert!(notice.text_body.contains("Safari/18 (laptop)"), "{}", notice.text_body);
    assert!(notice.text_body.contains("198.51.100.0/24"), "{}", notice.text_body);
    assert!(!notice.text_body.contains("198.51.100.7"), "only the network is told: {}", notice.text_body);
    app.client.login(login_from("Safari/18 (laptop)", "198.51.100.8")).await.unwrap();
    app.client.login(login_from("Firefox/133.0 (phone)", "203.0.113.9")).await.unwrap();
    app.emails.settle().await;
    assert_eq!(emails_to(&app, "ada@example.com", NEW_DEVICE).len(), 1);
}

async fn concurrent_logins_from_one_new_device_send_one_notice(mut app: TestApp) {
    verified_user(&mut app, "ada@example.com").await;
    app.client.login(login_from("Firefox/133.0 (phone)", "203.0.113.9")).await.unwrap();
    for round in 0..3 {
        let agent = format!("Tablet/{round}");
        let logins = (0..6).map(|_| {
            let mut client = app.client.clone();
            let request = login_from(&agent, "192.0.2.10");
            async move { client.login(request).await }
        });
        for outcome in futures_util::future::join_all(logins).await {
            outcome.unwrap();
        }
    }
    for round in 0..3 {
        wait_for_email_containing(&app, &format!("Tablet/{round}")).await;
    }
    app.emails.settle().await;
    let notices = emails_to(&app, "ada@example.com", NEW_DEVICE);
    assert_eq!(notices.len(), 3, "one notice per new device, however many logins raced");
    for round in 0..3 {
        let agent = format!("Tablet/{round}");
        assert_eq!(notices.iter().filter(|n| n.text_body.contains(&agent)).count(), 1, "{agent}");
    }
}

async fn wait_for_email_containing(app: &TestApp, text: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !emails_to(app, "ada@example.com", NEW_DEVICE).iter().any(|email| email.text_body.contains(text)) {
        assert!(tokio::time::Instant::now() < deadline, "no new-device notice naming {text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
