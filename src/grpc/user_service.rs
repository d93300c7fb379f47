use std::{sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::observability::Metrics;

use super::{
    call_limits::{CallLimits, Operation},
    convert,
    proto::{self, user_service_server::UserService},
};
use crate::{
    application::{
        ApplicationError, BeginTotpEnrollment, ChangePassword, CompleteMfaLogin, ConfirmEmailChange,
        ConfirmTotpEnrollment, DisableTotp, GetCurrentUser, ListSessions, Login, LoginCommand, Logout, LogoutAll,
        PasswordRules, RefreshSession, RegenerateRecoveryCodes, RequestEmailChange, RequestPasswordReset,
        ResendVerificationEmail, ResetPassword, RevokeSession, SessionTokens, SignUp, SignUpCommand, ValidateToken,
        VerifyEmail,
    },
    domain::{
        Email, OpaqueToken, PlaintextPassword, RecoveryCode, SecondFactor, TotpCode,
        ports::{AccessTokenIssuer, InvalidRefreshToken},
    },
};

/// `identity.v1.UserService`, wired to the use cases.
pub struct UserGrpcService {
    pub password_rules: PasswordRules,
    pub sign_up: SignUp,
    pub verify_email: VerifyEmail,
    pub resend_verification_email: ResendVerificationEmail,
    pub login: Login,
    pub validate_token: ValidateToken,
    pub get_current_user: GetCurrentUser,
    pub refresh_session: RefreshSession,
    pub list_sessions: ListSessions,
    pub revoke_session: RevokeSession,
    pub logout: Logout,
    pub logout_all: LogoutAll,
    pub change_password: ChangePassword,
    pub request_password_reset: RequestPasswordReset,
    pub reset_password: ResetPassword,
    pub request_email_change: RequestEmailChange,
    pub confirm_email_change: ConfirmEmailChange,
    pub complete_mfa_login: CompleteMfaLogin,
    pub begin_totp_enrollment: BeginTotpEnrollment,
    pub confirm_totp_enrollment: ConfirmTotpEnrollment,
    pub disable_totp: DisableTotp,
    pub regenerate_recovery_codes: RegenerateRecoveryCodes,
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub limits: CallLimits,
    pub metrics: Arc<Metrics>,
    /// RPCs whose work differs for registered and unknown addresses answer no
    /// sooner than this, so that timing does not tell them apart.
    pub enumeration_floor: Duration,
}

fn session_response(tokens: SessionTokens) -> proto::RefreshSessionResponse {
    proto::RefreshSessionResponse {
        access_token: tokens.access_token.token.expose_secret().to_owned(),
        access_token_expires_at: Some(convert::timestamp(tokens.access_token.expires_at)),
        refresh_token: tokens.refresh_token.token.expose_secret().to_owned(),
        refresh_token_expires_at: Some(convert::timestamp(tokens.refresh_token.expires_at)),
        user: Some(convert::user(&tokens.user)),
    }
}

fn login_response(tokens: SessionTokens) -> proto::LoginResponse {
    proto::LoginResponse {
        access_token: tokens.access_token.token.expose_secret().to_owned(),
        access_token_expires_at: Some(convert::timestamp(tokens.access_token.expires_at)),
        refresh_token: tokens.refresh_token.token.expose_secret().to_owned(),
        refresh_token_expires_at: Some(convert::timestamp(tokens.refresh_token.expires_at)),
        user: Some(convert::user(&tokens.user)),
    }
}

fn shown_codes(codes: &[RecoveryCode]) -> Vec<String> {
    codes.iter().map(|code| code.grouped().expose_secret().to_owned()).collect()
}

fn parse_second_factor(raw: &str) -> Result<SecondFactor, ApplicationError> {
    SecondFactor::parse(raw).map_err(|e| ApplicationError::invalid_field("code", e))
}

fn parse_current_password(raw: String) -> Result<PlaintextPassword, ApplicationError> {
    PlaintextPassword::parse(raw).map_err(|e| ApplicationError::invalid_field("current_password", e))
}

fn parse_refresh_token(raw: &str) -> Result<OpaqueToken, ApplicationError> {
    OpaqueToken::parse(raw).map_err(|_| ApplicationError::InvalidRefreshToken(InvalidRefreshToken))
}

/// One INVALID_ARGUMENT listing the violations of every field that failed;
/// any other error as it is.
fn all_violations<const N: usize>(errors: [Option<ApplicationError>; N]) -> ApplicationError {
    let mut violations = Vec::new();
    for error in errors.into_iter().flatten() {
        match error {
            ApplicationError::InvalidInput(found) => violations.extend(found),
            other => return other,
        }
    }
    ApplicationError::InvalidInput(violations)
}

/// Pads a call to `floor`, whatever its outcome.
async fn no_sooner_than<T>(floor: Duration, work: impl std::future::Future<Output = T>) -> T {
    let deadline = tokio::time::Instant::now() + floor;
    let result = work.await;
    tokio::time::sleep_until(deadline).await;
    result
}

fn parse_email(raw: &str) -> Result<Email, ApplicationError> {
    Email::parse(raw).map_err(|e| ApplicationError::invalid_field("email", e))
}

/// Handlers run inside the per-RPC span (see `request_context`): the user id
/// lands on it, and so on the "rpc finished" log line.
fn record_user(user: &crate::domain::User) {
    tracing::Span::current().record("user_id", tracing::field::display(user.id()));
}

/// The token from `authorization: Bearer <token>`.
fn bearer_token(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = metadata.get("authorization").ok_or_else(|| {
        Status::unauthenticated("missing authorization metadata: send `authorization: Bearer <access token>`")
    })?;
    let value = value.to_str().map_err(|_| Status::unauthenticated("malformed authorization metadata"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(Status::unauthenticated("authorization metadata must be `Bearer <access token>`")),
    }
}

#[tonic::async_trait]
impl UserService for UserGrpcService {
    async fn sign_up(&self, request: Request<proto::SignUpRequest>) -> Result<Response<proto::SignUpResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::SignUp).await?;
        let command = SignUpCommand::parse(convert::sign_up_input(request.into_inner()), &self.password_rules).await?;
        self.limits.check_email(Operation::SignUp, &command.email, client.as_ref()).await?;
        let user = self.sign_up.execute(command).await?;
        record_user(&user);
        Ok(Response::new(proto::SignUpResponse { user: Some(convert::user(&user)) }))
    }

    async fn verify_email(
        &self,
        request: Request<proto::VerifyEmailRequest>,
    ) -> Result<Response<proto::VerifyEmailResponse>, Status> {
        self.limits.check_address(&request, Operation::VerifyEmail).await?;
        let token =
            OpaqueToken::parse(&request.into_inner().token).map_err(|_| ApplicationError::InvalidVerificationToken)?;
        let user = self.verify_email.execute(token).await?;
        record_user(&user);
        Ok(Response::new(proto::VerifyEmailResponse { user: Some(convert::user(&user)) }))
    }

    async fn resend_verification_email(
        &self,
        request: Request<proto::ResendVerificationEmailRequest>,
    ) -> Result<Response<proto::ResendVerificationEmailResponse>, Status> {
        let email = parse_email(&request.get_ref().email)?;
        let client = self.limits.check_address(&request, Operation::ResendVerificationEmail).await?;
        self.limits.check_email(Operation::ResendVerificationEmail, &email, client.as_ref()).await?;
        no_sooner_than(self.enumeration_floor, self.resend_verification_email.execute(email)).await?;
        Ok(Response::new(proto::ResendVerificationEmailResponse {}))
    }

    async fn login(&self, request: Request<proto::LoginRequest>) -> Result<Response<proto::LoginResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::Login).await?;
        let (metadata, _, mut request) = request.into_parts();
        let context = convert::client_context(request.client.take(), &metadata, client);
        let email = parse_email(&request.email);
        let password =
            PlaintextPassword::parse(request.password).map_err(|e| ApplicationError::invalid_field("password", e));
        let command = match (email, password, context) {
            (Ok(email), Ok(password), Ok(context)) => LoginCommand { email, password, client, context },
            (email, password, context) => {
                return Err(all_violations([email.err(), password.err(), context.err()]).into());
            }
        };
        self.limits.check_email(Operation::Login, &command.email, client.as_ref()).await?;
        let result = self.login.execute(command).await;
        self.metrics.record_login(match &result {
            Ok(_) => "success",
            Err(ApplicationError::InvalidCredentials) => "bad_credentials",
            Err(ApplicationError::EmailNotVerified) => "unverified",
            Err(ApplicationError::AccountDisabled) => "disabled",
            Err(ApplicationError::RateLimited { .. }) => "throttled",
            Err(ApplicationError::MfaRequired(_)) => "mfa_required",
            Err(_) => "error",
        });
        let outcome = result?;
        record_user(&outcome.user);
        Ok(Response::new(login_response(outcome)))
    }

    async fn complete_mfa_login(
        &self,
        request: Request<proto::CompleteMfaLoginRequest>,
    ) -> Result<Response<proto::LoginResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::CompleteMfaLogin).await?;
        // The device as the transport saw it (CompleteMfaLoginRequest has no `client`).
        let context = convert::client_context(None, request.metadata(), client)?;
        let body = request.into_inner();
        let challenge = OpaqueToken::parse(&body.challenge).map_err(|_| ApplicationError::InvalidMfaChallenge)?;
        let code = parse_second_factor(&body.code)?;
        let result = self.complete_mfa_login.execute(challenge, code, client, context).await;
        self.metrics.record_login(match &result {
            Ok(_) => "success_mfa",
            Err(ApplicationError::InvalidSecondFactor) => "bad_code",
            Err(ApplicationError::InvalidMfaChallenge) => "bad_challenge",
            Err(ApplicationError::RateLimited { .. }) => "throttled",
            Err(_) => "error",
        });
        let tokens = result?;
        record_user(&tokens.user);
        Ok(Response::new(login_response(tokens)))
    }

    async fn begin_totp_enrollment(
        &self,
        request: Request<proto::BeginTotpEnrollmentRequest>,
    ) -> Result<Response<proto::BeginTotpEnrollmentResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::ManageMfa).await?;
        let token = bearer_token(request.metadata())?.to_owned();
        let current = parse_current_password(request.into_inner().current_password)?;
        let started = self.begin_totp_enrollment.execute(&token, current, client).await?;
        Ok(Response::new(proto::BeginTotpEnrollmentResponse {
            secret: started.secret.expose_secret().to_owned(),
            otpauth_uri: started.otpauth_uri.expose_secret().to_owned(),
            expires_at: Some(convert::timestamp(started.expires_at)),
        }))
    }

    async fn confirm_totp_enrollment(
        &self,
        request: Request<proto::ConfirmTotpEnrollmentRequest>,
    ) -> Result<Response<proto::ConfirmTotpEnrollmentResponse>, Status> {
        self.limits.check_address(&request, Operation::ManageMfa).await?;
        let token = bearer_token(request.metadata())?.to_owned();
        let code = TotpCode::parse(&request.into_inner().code).map_err(|_| {
            ApplicationError::invalid_field("code", "must be the 6-digit code of the authenticator app")
        })?;
        let codes = self.confirm_totp_enrollment.execute(&token, code).await?;
        Ok(Response::new(proto::ConfirmTotpEnrollmentResponse { recovery_codes: shown_codes(&codes) }))
    }

    async fn disable_totp(
        &self,
        request: Request<proto::DisableTotpRequest>,
    ) -> Result<Response<proto::DisableTotpResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::ManageMfa).await?;
        let token = bearer_token(request.metadata())?.to_owned();
        let body = request.into_inner();
        let (current, code) = (parse_current_password(body.current_password), parse_second_factor(&body.code));
        let (current, code) = match (current, code) {
            (Ok(current), Ok(code)) => (current, code),
            (Err(ApplicationError::InvalidInput(mut a)), Err(ApplicationError::InvalidInput(b))) => {
                a.extend(b);
                return Err(ApplicationError::InvalidInput(a).into());
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        self.disable_totp.execute(&token, current, code, client).await?;
        Ok(Response::new(proto::DisableTotpResponse {}))
    }

    async fn regenerate_recovery_codes(
        &self,
        request: Request<proto::RegenerateRecoveryCodesRequest>,
    ) -> Result<Response<proto::RegenerateRecoveryCodesResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::ManageMfa).await?;
        let token = bearer_token(request.metadata())?.to_owned();
        let code = parse_second_factor(&request.into_inner().code)?;
        let codes = self.regenerate_recovery_codes.execute(&token, code, client).await?;
        Ok(Response::new(proto::RegenerateRecoveryCodesResponse { recovery_codes: shown_codes(&codes) }))
    }

    async fn validate_token(
        &self,
        request: Request<proto::ValidateTokenRequest>,
    ) -> Result<Response<proto::ValidateTokenResponse>, Status> {
        let request = request.into_inner();
        if request.access_token.trim().is_empty() {
            return Err(ApplicationError::invalid_field("access_token", "is required").into());
        }
        let claims = self.validate_token.execute(request.access_token.trim()).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        Ok(Response::new(convert::token_claims(&claims)))
    }

    async fn get_public_keys(
        &self,
        _request: Request<proto::GetPublicKeysRequest>,
    ) -> Result<Response<proto::GetPublicKeysResponse>, Status> {
        let keys = self
            .tokens
            .public_keys()
            .into_iter()
            .map(|key| proto::PublicKey { kid: key.kid, public_key: key.public_key })
            .collect();
        Ok(Response::new(proto::GetPublicKeysResponse { keys }))
    }

    async fn get_current_user(
        &self,
        request: Request<proto::GetCurrentUserRequest>,
    ) -> Result<Response<proto::GetCurrentUserResponse>, Status> {
        let token = bearer_token(request.metadata())?;
        let user = self.get_current_user.execute(token).await?;
        record_user(&user);
        Ok(Response::new(proto::GetCurrentUserResponse { user: Some(convert::user(&user)) }))
    }

    async fn refresh_session(
        &self,
        request: Request<proto::RefreshSessionRequest>,
    ) -> Result<Response<proto::RefreshSessionResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::RefreshSession).await?;
        let (metadata, _, mut request) = request.into_parts();
        let context = convert::client_context(request.client.take(), &metadata, client)?;
        let token = parse_refresh_token(&request.refresh_token)?;
        let tokens = self.refresh_session.execute(token, context).await?;
        record_user(&tokens.user);
        Ok(Response::new(session_response(tokens)))
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListSessionsRequest>,
    ) -> Result<Response<proto::ListSessionsResponse>, Status> {
        self.limits.check_address(&request, Operation::ManageSessions).await?;
        let token = bearer_token(request.metadata())?;
        let sessions = self.list_sessions.execute(token).await?;
        Ok(Response::new(proto::ListSessionsResponse {
            sessions: sessions.iter().map(convert::listed_session).collect(),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<proto::RevokeSessionRequest>,
    ) -> Result<Response<proto::RevokeSessionResponse>, Status> {
        self.limits.check_address(&request, Operation::ManageSessions).await?;
        let token = bearer_token(request.metadata())?;
        let raw = request.get_ref().session_id.trim();
        let session_id =
            uuid::Uuid::try_parse(raw).map_err(|_| ApplicationError::invalid_field("session_id", "is not a UUID"))?;
        self.revoke_session.execute(token, session_id).await?;
        Ok(Response::new(proto::RevokeSessionResponse {}))
    }

    async fn logout(&self, request: Request<proto::LogoutRequest>) -> Result<Response<proto::LogoutResponse>, Status> {
        self.limits.check_address(&request, Operation::Logout).await?;
        let token = parse_refresh_token(&request.into_inner().refresh_token)?;
        self.logout.execute(token).await?;
        Ok(Response::new(proto::LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<proto::LogoutAllRequest>,
    ) -> Result<Response<proto::LogoutAllResponse>, Status> {
        self.limits.check_address(&request, Operation::ManageSessions).await?;
        let token = bearer_token(request.metadata())?;
        let revoked = self.logout_all.execute(token).await?;
        Ok(Response::new(proto::LogoutAllResponse { revoked_sessions: u32::try_from(revoked).unwrap_or(u32::MAX) }))
    }

    async fn change_password(
        &self,
        request: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::ChangePasswordResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::ChangePassword).await?;
        let token = bearer_token(request.metadata())?.to_owned();
        let body = request.into_inner();
        let current = PlaintextPassword::parse(body.current_password)
            .map_err(|e| ApplicationError::invalid_field("current_password", e))?;
        self.change_password.execute(&token, current, body.new_password, client).await?;
        Ok(Response::new(proto::ChangePasswordResponse {}))
    }

    async fn request_password_reset(
        &self,
        request: Request<proto::RequestPasswordResetRequest>,
    ) -> Result<Response<proto::RequestPasswordResetResponse>, Status> {
        let email = parse_email(&request.get_ref().email)?;
        let client = self.limits.check_address(&request, Operation::RequestPasswordReset).await?;
        self.limits.check_email(Operation::RequestPasswordReset, &email, client.as_ref()).await?;
        no_sooner_than(self.enumeration_floor, self.request_password_reset.execute(email)).await?;
        Ok(Response::new(proto::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        request: Request<proto::ResetPasswordRequest>,
    ) -> Result<Response<proto::ResetPasswordResponse>, Status> {
        self.limits.check_address(&request, Operation::ResetPassword).await?;
        let body = request.into_inner();
        let token = OpaqueToken::parse(&body.token).map_err(|_| ApplicationError::InvalidResetToken)?;
        self.reset_password.execute(token, body.new_password).await?;
        Ok(Response::new(proto::ResetPasswordResponse {}))
    }

    async fn request_email_change(
        &self,
        request: Request<proto::RequestEmailChangeRequest>,
    ) -> Result<Response<proto::RequestEmailChangeResponse>, Status> {
        let client = self.limits.check_address(&request, Operation::RequestEmailChange).await?;
        let token = bearer_token(request.metadata())?.to_owned();
        let body = request.into_inner();
        let email = Email::parse(&body.new_email).map_err(|e| ApplicationError::invalid_field("new_email", e));
        let current = PlaintextPassword::parse(body.current_password)
            .map_err(|e| ApplicationError::invalid_field("current_password", e));
        let (email, current) = match (email, current) {
            (Ok(email), Ok(current)) => (email, current),
            (Err(ApplicationError::InvalidInput(mut a)), Err(ApplicationError::InvalidInput(b))) => {
                a.extend(b);
                return Err(ApplicationError::InvalidInput(a).into());
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        self.limits.check_email(Operation::RequestEmailChange, &email, client.as_ref()).await?;
        self.request_email_change.execute(&token, email, current, client).await?;
        Ok(Response::new(proto::RequestEmailChangeResponse {}))
    }

    async fn confirm_email_change(
        &self,
        request: Request<proto::ConfirmEmailChangeRequest>,
    ) -> Result<Response<proto::ConfirmEmailChangeResponse>, Status> {
        self.limits.check_address(&request, Operation::ConfirmEmailChange).await?;
        let token =
            OpaqueToken::parse(&request.into_inner().token).map_err(|_| ApplicationError::InvalidEmailChangeToken)?;
        let user = self.confirm_email_change.execute(token).await?;
        record_user(&user);
        Ok(Response::new(proto::ConfirmEmailChangeResponse { user: Some(convert::user(&user)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token(&metadata("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&metadata("bearer abc")).unwrap(), "abc");
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        for bad in ["Basic abc", "Bearer ", "abc"] {
            assert_eq!(bearer_token(&metadata(bad)).unwrap_err().code(), tonic::Code::Unauthenticated, "{bad}");
        }
        assert_eq!(bearer_token(&MetadataMap::new()).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
