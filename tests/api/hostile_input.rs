//! Every RPC fed malformed, oversized, empty and hostile input: a precise status,
//! never INTERNAL or UNKNOWN, and the server keeps serving.

use identity::grpc::proto::{
    ChangePasswordRequest, GetCurrentUserRequest, GetPublicKeysRequest, LoginRequest, LogoutRequest,
    RefreshSessionRequest, RequestPasswordResetRequest, ResendVerificationEmailRequest, ResetPasswordRequest,
    SignUpRequest, ValidateTokenRequest, VerifyEmailRequest,
};
use tonic::Code;

use testkit::on_both_databases;

use crate::helpers::{TestApp, spawn_app, with_bearer};

on_both_databases!(builder = spawn_app; hostile_input_gets_precise_statuses_and_the_server_keeps_serving);

/// The official PASETO v4 vectors (paseto-standard/test-vectors, v4.json): the
/// "4-F" tokens must fail everywhere; the "4-S" tokens are valid, but signed by
/// the test-vector key, which is not ours.
const PASETO_V4_VECTORS: &[&str] = &[
    "v4.public.eyJkYXRhIjoidGhpcyBpcyBhIHNpZ25lZCBtZXNzYWdlIiwiZXhwIjoiMjAyMi0wMS0wMVQwMDowMDowMCswMDowMCJ9bg_XBBzds8lTZShVlwwKSgeKpLT3yukTw6JUz3W4h_ExsQV-P0V54zemZDcAxFaSeef1QlXEFtkqxT1ciiQEDA",
    "v4.public.eyJkYXRhIjoidGhpcyBpcyBhIHNpZ25lZCBtZXNzYWdlIiwiZXhwIjoiMjAyMi0wMS0wMVQwMDowMDowMCswMDowMCJ9v3Jt8mx_TdM2ceTGoqwrh4yDFn0XsHvvV_D0DtwQxVrJEBMl0F2caAdgnpKlt4p7xBnx1HcO-SPo8FPp214HDw.eyJraWQiOiJ6VmhNaVBCUDlmUmYyc25FY1Q3Z0ZUaW9lQTlDT2NOeTlEZmdMMVc2MGhhTiJ9",
    "v4.local.vngXfCISbnKgiP6VWGuOSlYrFYU300fy9ijW33rznDYgxHNPwWluAY2Bgb0z54CUs6aYYkIJ-bOOOmJHPuX_34Agt_IPlNdGDpRdGNnBz2MpWJvB3cttheEc1uyCEYltj7wBQQYX.YXJiaXRyYXJ5LXN0cmluZy10aGF0LWlzbid0LWpzb24",
    "v4.public.eyJpbnZhbGlkIjoidGhpcyBzaG91bGQgbmV2ZXIgZGVjb2RlIn22Sp4gjCaUw0c7EH84ZSm_jN_Qr41MrgLNu5LIBCzUr1pn3Z-Wukg9h3ceplWigpoHaTLcwxj0NsI1vjTh67YB.eyJraWQiOiJ6VmhNaVBCUDlmUmYyc25FY1Q3Z0ZUaW9lQTlDT2NOeTlEZmdMMVc2MGhhTiJ9",
    "v3.local.23e_2PiqpQBPvRFKzB0zHhjmxK3sKo2grFZRRLM-U7L0a8uHxuF9RlVz3Ic6WmdUUWTxCaYycwWV1yM8gKbZB2JhygDMKvHQ7eBf8GtF0r3K0Q_gF1PXOxcOgztak1eD1dPe9rLVMSgR0nHJXeIGYVuVrVoLWQ.YXJiaXRyYXJ5LXN0cmluZy10aGF0LWlzbid0LWpzb24",
    "v4.local.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAr68PS4AXe7If_ZgesdkUMvSwscFlAl1pk5HC0e8kApeaqMfGo_7OpBnwJOAbY9V7WU6abu74MmcUE8YWAiaArVI8XJ5hOb_4v9RmDkneN0S92dx0OW4pgy7omxgf3S8c3LlQh",
    "v4.local.32VIErrEkmY4JVILovbmfPXKW9wT1OdQepjMTC_MOtjA4kiqw7_tcaOM5GNEcnTxl60WkwMsYXw6FSNb_UdJPXjpzm0KW9ojM5f4O2mRvE2IcweP-PRdoHjd5-RHCiExR1IK6t4x-RMNXtQNbz7FvFZ_G-lFpk5RG3EOrwDL6CgDqcerSQ==.eyJraWQiOiJ6VmhNaVBCUDlmUmYyc25FY1Q3Z0ZUaW9lQTlDT2NOeTlEZmdMMVc2MGhhTiJ9",
];

fn hostile_strings() -> Vec<String> {
    let mut values: Vec<String> = vec![
        String::new(),
        " ".into(),
        "\u{0}".into(),
        "\u{0}\u{1}\u{7f}\u{1b}[31m".into(),
        "\u{202E}\u{200B}\u{FEFF}".into(),
        "a@b@c".into(),
        "ＡＬＩＣＥ＠ＥＸＡＭＰＬＥ.ＣＯＭ".into(),
        "not-a-uuid".into(),
        "00000000-0000-0000-0000-00000000000".into(),
        "v4.public.".into(),
        "v4.public.AAAA".into(),
        "v2.public.eyJkYXRhIjoiaGkifQ".into(),
        "A".repeat(42),
        "A".repeat(43) + "=",
        "' OR 1=1 --".into(),
        "%s%s%s%n".into(),
        "😀".repeat(300),
        "x".repeat(60_000),
    ];
    values.extend(PASETO_V4_VECTORS.iter().map(|v| (*v).to_owned()));
    values.extend(PASETO_V4_VECTORS.iter().map(|v| v[..v.len() / 2].to_owned()));
    values
}

fn assert_precise(result: Result<(), tonic::Status>, what: &str) {
    if let Err(status) = result {
        assert!(
            !matches!(status.code(), Code::Internal | Code::Unknown | Code::Unimplemented | Code::DataLoss),
            "{what}: {:?} {}",
            status.code(),
            status.message()
        );
    }
}

async fn hostile_input_gets_precise_statuses_and_the_server_keeps_serving(mut app: TestApp) {
    let c = &mut app.client;
    for value in hostile_strings() {
        let v = || value.clone();
        let label = &value[..value.len().min(24)];
        assert_precise(
            c.sign_up(SignUpRequest { email: v(), password: v(), display_name: v(), first_name: v(), last_name: v() })
                .await
                .map(|_| ()),
            label,
        );
        assert_precise(c.verify_email(VerifyEmailRequest { token: v() }).await.map(|_| ()), label);
        assert_precise(
            c.resend_verification_email(ResendVerificationEmailRequest { email: v() }).await.map(|_| ()),
            label,
        );
        assert_precise(c.login(LoginRequest { email: v(), password: v(), client: None }).await.map(|_| ()), label);
        assert_precise(c.validate_token(ValidateTokenRequest { access_token: v() }).await.map(|_| ()), label);
        assert_precise(
            c.refresh_session(RefreshSessionRequest { refresh_token: v(), client: None }).await.map(|_| ()),
            label,
        );
        assert_precise(c.logout(LogoutRequest { refresh_token: v() }).await.map(|_| ()), label);
        assert_precise(c.request_password_reset(RequestPasswordResetRequest { email: v() }).await.map(|_| ()), label);
        assert_precise(
            c.reset_password(ResetPasswordRequest { token: v(), new_password: v() }).await.map(|_| ()),
            label,
        );
        // Bearer-authenticated RPCs, with the value as the token (when it fits in a header).
        if value.chars().all(|ch| ch.is_ascii_graphic()) && !value.is_empty() && value.len() < 8_000 {
            let status = c.get_current_user(with_bearer(&value, GetCurrentUserRequest {})).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{label}");
            let change = ChangePasswordRequest { current_password: v(), new_password: v() };
            assert_precise(c.change_password(with_bearer(&value, change)).await.map(|_| ()), label);
        }
    }
    for vector in PASETO_V4_VECTORS {
        let status = c.validate_token(ValidateTokenRequest { access_token: (*vector).into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{vector}");
    }
    // Past the message size limit: refused by the transport, precisely.
    let huge = c.sign_up(SignUpRequest { email: "x".repeat(1_000_000), ..Default::default() }).await.unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange);
    c.get_public_keys(GetPublicKeysRequest {}).await.expect("the server keeps serving");
}
