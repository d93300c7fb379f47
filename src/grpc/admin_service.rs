use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status};

use super::{
    convert,
    proto::{self, admin_service_server::AdminService},
};
use crate::{
    application::{AdminUsers, ApplicationError, ListUsersInput},
    domain::{Email, UserId, UserStatus},
};

/// `identity.v1.AdminService`: authenticated by a service API key in `x-api-key`.
pub struct AdminGrpcService {
    pub admin: AdminUsers,
    /// SHA-256 digests of the accepted keys.
    pub key_hashes: Vec<[u8; 32]>,
    /// Set behind a proxy: the metadata header it writes the caller's address
    /// to, so that refused calls are logged with the caller's address.
    pub trusted_client_ip_header: Option<String>,
}

impl AdminGrpcService {
    /// Parses the configured lower-case hex digests.
    pub fn new(admin: AdminUsers, hex_hashes: &[String], trusted_client_ip_header: Option<String>) -> Self {
        let key_hashes =
            hex_hashes.iter().filter_map(|digest| <[u8; 32] as hex::FromHex>::from_hex(digest).ok()).collect();
        Self { admin, key_hashes, trusted_client_ip_header }
    }

    /// The acting key's id for the audit log: the first 8 hex digits of its
    /// SHA-256, which identify it without revealing it.
    ///
    /// # Errors
    /// PERMISSION_DENIED when no key is configured; UNAUTHENTICATED for a
    /// missing or unknown key.
    fn authorize<T>(&self, request: &Request<T>) -> Result<String, Status> {
        // Who was refused, for the operator; the key itself is never logged.
        let client = || {
            super::call_limits::client_address(request, self.trusted_client_ip_header.as_deref())
                .map_or_else(|| "unknown".to_owned(), |address| address.to_string())
        };
        if self.key_hashes.is_empty() {
            tracing::info!(client_address = %client(), "admin call refused: the admin API is disabled");
            return Err(Status::permission_denied("the admin API is disabled: no API key is configured"));
        }
        let Some(key) = request.metadata().get("x-api-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty())
        else {
            tracing::warn!(client_address = %client(), "admin call refused: no x-api-key");
            return Err(Status::unauthenticated("missing x-api-key metadata"));
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare against every key in constant time, without stopping early.
        let matched = self.key_hashes.iter().fold(subtle::Choice::from(0), |found, known| found | known.ct_eq(&digest));
        if bool::from(matched) {
            Ok(hex::encode(&digest[..4]))
        } else {
            tracing::warn!(client_address = %client(), "admin call refused: unknown API key");
            Err(Status::unauthenticated("unknown API key"))
        }
    }
}

fn parse_user_id(raw: &str) -> Result<UserId, ApplicationError> {
    UserId::parse(raw.trim()).map_err(|_| ApplicationError::invalid_field("user_id", "is not a UUID"))
}

fn status_filter(raw: i32) -> Result<Option<UserStatus>, ApplicationError> {
    match proto::UserStatus::try_from(raw) {
        Ok(proto::UserStatus::Unspecified) => Ok(None),
        Ok(proto::UserStatus::PendingVerification) => Ok(Some(UserStatus::PendingVerification)),
        Ok(proto::UserStatus::Active) => Ok(Some(UserStatus::Active)),
        Ok(proto::UserStatus::Disabled) => Ok(Some(UserStatus::Disabled)),
        Err(_) => Err(ApplicationError::invalid_field("status", "is not a known UserStatus")),
    }
}

#[tonic::async_trait]
impl AdminService for AdminGrpcService {
    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let actor = self.authorize(&request)?;
        let body = request.get_ref();
        let user = match (body.user_id.is_empty(), body.legacy_id.is_empty()) {
            (true, false) => self.admin.get_by_legacy_id(&actor, &body.legacy_id).await?,
            (false, false) => {
                return Err(
                    ApplicationError::invalid_field("legacy_id", "give either user_id or legacy_id, not both").into()
                );
            }
            _ => self.admin.get(&actor, parse_user_id(&body.user_id)?).await?,
        };
        Ok(Response::new(proto::GetUserResponse { user: Some(convert::user(&user)) }))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let actor = self.authorize(&request)?;
        let body = request.into_inner();
        let input = ListUsersInput {
            page_size: body.page_size,
            page_token: body.page_token,
            status: status_filter(body.status)?,
            email_prefix: body.email_prefix,
        };
        let (users, next_page_token) = self.admin.list(&actor, input).await?;
        Ok(Response::new(proto::ListUsersResponse {
            users: users.iter().map(convert::user).collect(),
            next_page_token,
        }))
    }

    async fn disable_user(
        &self,
        request: Request<proto::DisableUserRequest>,
    ) -> Result<Response<proto::DisableUserResponse>, Status> {
        let actor = self.authorize(&request)?;
        let id = parse_user_id(&request.get_ref().user_id)?;
        let user = self.admin.disable(&actor, id).await?;
        Ok(Response::new(proto::DisableUserResponse { user: Some(convert::user(&user)) }))
    }

    async fn enable_user(
        &self,
        request: Request<proto::EnableUserRequest>,
    ) -> Result<Response<proto::EnableUserResponse>, Status> {
        let actor = self.authorize(&request)?;
        let id = parse_user_id(&request.get_ref().user_id)?;
        let user = self.admin.enable(&actor, id).await?;
        Ok(Response::new(proto::EnableUserResponse { user: Some(convert::user(&user)) }))
    }

    async fn set_user_email(
        &self,
        request: Request<proto::SetUserEmailRequest>,
    ) -> Result<Response<proto::SetUserEmailResponse>, Status> {
        let actor = self.authorize(&request)?;
        let body = request.into_inner();
        let id = parse_user_id(&body.user_id);
        let email = Email::parse(&body.email).map_err(|e| ApplicationError::invalid_field("email", e));
        let (id, email) = match (id, email) {
            (Ok(id), Ok(email)) => (id, email),
            (Err(ApplicationError::InvalidInput(mut a)), Err(ApplicationError::InvalidInput(b))) => {
                a.extend(b);
                return Err(ApplicationError::InvalidInput(a).into());
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let user = self.admin.set_email(&actor, id, email, body.verified).await?;
        Ok(Response::new(proto::SetUserEmailResponse { user: Some(convert::user(&user)) }))
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let actor = self.authorize(&request)?;
        let id = parse_user_id(&request.get_ref().user_id)?;
        self.admin.delete(&actor, id).await?;
        Ok(Response::new(proto::DeleteUserResponse {}))
    }

    async fn list_user_sessions(
        &self,
        request: Request<proto::ListUserSessionsRequest>,
    ) -> Result<Response<proto::ListUserSessionsResponse>, Status> {
        let actor = self.authorize(&request)?;
        let id = parse_user_id(&request.get_ref().user_id)?;
        let sessions = self.admin.list_sessions(&actor, id).await?;
        Ok(Response::new(proto::ListUserSessionsResponse {
            sessions: sessions.iter().map(|session| convert::session(session, false)).collect(),
        }))
    }

    async fn revoke_user_sessions(
        &self,
        request: Request<proto::RevokeUserSessionsRequest>,
    ) -> Result<Response<proto::RevokeUserSessionsResponse>, Status> {
        let actor = self.authorize(&request)?;
        let id = parse_user_id(&request.get_ref().user_id)?;
        let revoked = self.admin.revoke_sessions(&actor, id).await?;
        Ok(Response::new(proto::RevokeUserSessionsResponse {
            revoked_sessions: u32::try_from(revoked).unwrap_or(u32::MAX),
        }))
    }

    async fn reset_mfa(
        &self,
        request: Request<proto::ResetMfaRequest>,
    ) -> Result<Response<proto::ResetMfaResponse>, Status> {
        let actor = self.authorize(&request)?;
        let id = parse_user_id(&request.get_ref().user_id)?;
        self.admin.reset_mfa(&actor, id).await?;
        Ok(Response::new(proto::ResetMfaResponse {}))
    }
}
