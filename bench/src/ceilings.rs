//! The ceilings each scenario is compared with, measured on the same machine
//! with the same worker count: raw argon2, and two bare tonic servers that do
//! nothing but answer (echo) or verify a PASETO token.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use identity::{
    grpc::proto::{
        self,
        user_service_server::{UserService, UserServiceServer},
    },
    infrastructure::Argon2Settings,
};
use pasetors::{
    Public,
    claims::Claims,
    footer::Footer,
    keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate},
    paserk::{FormatAsPaserk, Id},
    token::UntrustedToken,
    version4::{PublicToken, V4},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// The environment variable a bare verifying server reads its PASERK public key from.
pub const PUBLIC_KEY_VAR: &str = "BENCH_PUBLIC_KEY";

/// Hashes per second with `settings.max_concurrent` threads hashing in a loop
/// for `duration`, each with its own memory allocated once: the most any
/// server with these parameters can verify on this machine.
///
/// # Errors
/// Invalid parameters.
pub fn argon2_rate(settings: Argon2Settings, duration: Duration) -> anyhow::Result<f64> {
    let params = settings.params()?;
    let started = Instant::now();
    let stop_at = started + duration;
    let hashes = std::thread::scope(|scope| {
        let workers: Vec<_> =
            (0..settings.max_concurrent).map(|_| scope.spawn(|| hash_until(&params, stop_at))).collect();
        workers.into_iter().map(|worker| worker.join().unwrap_or(Ok(0))).sum::<anyhow::Result<u64>>()
    })?;
    Ok(hashes as f64 / started.elapsed().as_secs_f64())
}

fn hash_until(params: &Params, stop_at: Instant) -> anyhow::Result<u64> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = vec![Block::new(); params.block_count()];
    let mut output = [0u8; 32];
    let mut hashes = 0;
    while Instant::now() < stop_at {
        argon2
            .hash_password_into_with_memory(b"plum-orbit-canyon-47!", b"sixteen byte slt", &mut output, &mut memory)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        hashes += 1;
    }
    Ok(hashes)
}

/// What a bare server does besides refusing everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareKind {
    /// `GetPublicKeys` answers a constant: the transport alone.
    Echo,
    /// `ValidateToken` verifies a PASETO v4.public token and reads its claims.
    Verify,
}

impl BareKind {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "echo" => Some(Self::Echo),
            "verify" => Some(Self::Verify),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Verify => "verify",
        }
    }
}

/// Signs access tokens shaped like the service's (same claims, same footer),
/// for the bare verifying server.
pub struct TokenMint {
    secret: AsymmetricSecretKey<V4>,
    kid: Id,
    pub public_paserk: String,
}

impl TokenMint {
    /// # Errors
    /// The system random source failed.
    pub fn generate() -> anyhow::Result<Self> {
        let pair = AsymmetricKeyPair::<V4>::generate().context("generating a key pair")?;
        let mut public_paserk = String::new();
        FormatAsPaserk::fmt(&pair.public, &mut public_paserk).context("formatting the public key")?;
        Ok(Self { kid: Id::from(&pair.public), secret: pair.secret, public_paserk })
    }

    /// # Errors
    /// Signing failed.
    pub fn sign(&self) -> anyhow::Result<String> {
        let pasetors = |e: pasetors::errors::Error| anyhow::anyhow!("building a token: {e}");
        let now = OffsetDateTime::now_utc();
        let mut claims = Claims::new().map_err(pasetors)?;
        claims.issuer("identity").map_err(pasetors)?;
        claims.audience("identity").map_err(pasetors)?;
        claims.subject(&uuid::Uuid::now_v7().to_string()).map_err(pasetors)?;
        claims.issued_at(&now.format(&Rfc3339)?).map_err(pasetors)?;
        claims.not_before(&now.format(&Rfc3339)?).map_err(pasetors)?;
        claims.expiration(&(now + Duration::from_secs(600)).format(&Rfc3339)?).map_err(pasetors)?;
        claims.token_identifier(&uuid::Uuid::new_v4().to_string()).map_err(pasetors)?;
        claims.add_additional("sid", uuid::Uuid::new_v4().to_string()).map_err(pasetors)?;
        let mut footer = Footer::new();
        footer.key_id(&self.kid);
        pasetors::public::sign(&self.secret, &claims, Some(&footer), None).map_err(pasetors)
    }
}

/// `identity.v1.UserService` doing nothing but the one call its kind measures.
struct BareUserService {
    kind: BareKind,
    key: Option<AsymmetricPublicKey<V4>>,
}

impl BareUserService {
    fn verify(&self, token: &str) -> Result<String, Status> {
        let refused = || Status::unauthenticated("the token does not verify");
        let key = self.key.as_ref().ok_or_else(|| Status::unimplemented("not a verifying server"))?;
        let untrusted = UntrustedToken::<Public, V4>::try_from(token).map_err(|_| refused())?;
        let footer_bytes = untrusted.untrusted_footer();
        let mut footer = Footer::new();
        footer.parse_bytes(footer_bytes).map_err(|_| refused())?;
        footer.get_claim("kid").and_then(|kid| kid.as_str()).ok_or_else(refused)?;
        let trusted = PublicToken::verify(key, &untrusted, Some(footer_bytes), None).map_err(|_| refused())?;
        let claims = Claims::from_string(trusted.payload()).map_err(|_| refused())?;
        let subject = claims.get_claim("sub").and_then(|sub| sub.as_str()).ok_or_else(refused)?;
        Ok(subject.to_owned())
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("bare server"))
}

#[tonic::async_trait]
impl UserService for BareUserService {
    async fn get_public_keys(
        &self,
        _request: Request<proto::GetPublicKeysRequest>,
    ) -> Result<Response<proto::GetPublicKeysResponse>, Status> {
        if self.kind != BareKind::Echo {
            return unimplemented();
        }
        let key = proto::PublicKey { kid: "k4.pid.bench".to_owned(), public_key: "k4.public.bench".to_owned() };
        Ok(Response::new(proto::GetPublicKeysResponse { keys: vec![key] }))
    }

    async fn validate_token(
        &self,
        request: Request<proto::ValidateTokenRequest>,
    ) -> Result<Response<proto::ValidateTokenResponse>, Status> {
        let user_id = self.verify(request.get_ref().access_token.trim())?;
        Ok(Response::new(proto::ValidateTokenResponse { user_id, ..Default::default() }))
    }

    async fn sign_up(&self, _: Request<proto::SignUpRequest>) -> Result<Response<proto::SignUpResponse>, Status> {
        unimplemented()
    }

    async fn verify_email(
        &self,
        _: Request<proto::VerifyEmailRequest>,
    ) -> Result<Response<proto::VerifyEmailResponse>, Status> {
        unimplemented()
    }

    async fn resend_verification_email(
        &self,
        _: Request<proto::ResendVerificationEmailRequest>,
    ) -> Result<Response<proto::ResendVerificationEmailResponse>, Status> {
        unimplemented()
    }

    async fn login(&self, _: Request<proto::LoginRequest>) -> Result<Response<proto::LoginResponse>, Status> {
        unimplemented()
    }

    async fn complete_mfa_login(
        &self,
        _: Request<proto::CompleteMfaLoginRequest>,
    ) -> Result<Response<proto::LoginResponse>, Status> {
        unimplemented()
    }

    async fn begin_totp_enrollment(
        &self,
        _: Request<proto::BeginTotpEnrollmentRequest>,
    ) -> Result<Response<proto::BeginTotpEnrollmentResponse>, Status> {
        unimplemented()
    }

    async fn confirm_totp_enrollment(
        &self,
        _: Request<proto::ConfirmTotpEnrollmentRequest>,
    ) -> Result<Response<proto::ConfirmTotpEnrollmentResponse>, Status> {
        unimplemented()
    }

    async fn disable_totp(
        &self,
        _: Request<proto::DisableTotpRequest>,
    ) -> Result<Response<proto::DisableTotpResponse>, Status> {
        unimplemented()
    }

    async fn regenerate_recovery_codes(
        &self,
        _: Request<proto::RegenerateRecoveryCodesRequest>,
    ) -> Result<Response<proto::RegenerateRecoveryCodesResponse>, Status> {
        unimplemented()
    }

    async fn get_current_user(
        &self,
        _: Request<proto::GetCurrentUserRequest>,
    ) -> Result<Response<proto::GetCurrentUserResponse>, Status> {
        unimplemented()
    }

    async fn refresh_session(
        &self,
        _: Request<proto::RefreshSessionRequest>,
    ) -> Result<Response<proto::RefreshSessionResponse>, Status> {
        unimplemented()
    }

    async fn list_sessions(
        &self,
        _: Request<proto::ListSessionsRequest>,
    ) -> Result<Response<proto::ListSessionsResponse>, Status> {
        unimplemented()
    }

    async fn revoke_session(
        &self,
        _: Request<proto::RevokeSessionRequest>,
    ) -> Result<Response<proto::RevokeSessionResponse>, Status> {
        unimplemented()
    }

    async fn logout(&self, _: Request<proto::LogoutRequest>) -> Result<Response<proto::LogoutResponse>, Status> {
        unimplemented()
    }

    async fn logout_all(
        &self,
        _: Request<proto::LogoutAllRequest>,
    ) -> Result<Response<proto::LogoutAllResponse>, Status> {
        unimplemented()
    }

    async fn change_password(
        &self,
        _: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::ChangePasswordResponse>, Status> {
        unimplemented()
    }

    async fn request_password_reset(
        &self,
        _: Request<proto::RequestPasswordResetRequest>,
    ) -> Result<Response<proto::RequestPasswordResetResponse>, Status> {
        unimplemented()
    }

    async fn reset_password(
        &self,
        _: Request<proto::ResetPasswordRequest>,
    ) -> Result<Response<proto::ResetPasswordResponse>, Status> {
        unimplemented()
    }
}

/// The child side of a bare server: serves on `port` until killed, with
/// gRPC health (always SERVING) so that the parent knows when it is up.
///
/// # Errors
/// The port is taken, or the verifying kind got no usable public key.
pub async fn serve_bare(kind: BareKind, port: u16) -> anyhow::Result<()> {
    let key = match kind {
        BareKind::Echo => None,
        BareKind::Verify => {
            let raw = std::env::var(PUBLIC_KEY_VAR).with_context(|| format!("{PUBLIC_KEY_VAR} is not set"))?;
            let key = AsymmetricPublicKey::<V4>::try_from(raw.as_str())
                .map_err(|_| anyhow::anyhow!("{PUBLIC_KEY_VAR} is not a PASERK k4.public key"))?;
            Some(key)
        }
    };
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    // The same transport settings as identity-server, so that only the handler differs.
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(UserServiceServer::new(BareUserService { kind, key }))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .context("the bare server failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_a_tampered_one_does_not() {
        let mint = TokenMint::generate().unwrap();
        let key = AsymmetricPublicKey::<V4>::try_from(mint.public_paserk.as_str()).unwrap();
        let service = BareUserService { kind: BareKind::Verify, key: Some(key) };
        let token = mint.sign().unwrap();
        assert!(service.verify(&token).is_ok());
        let mut tampered = token.into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        assert!(service.verify(&String::from_utf8(tampered).unwrap()).is_err());
    }
}
