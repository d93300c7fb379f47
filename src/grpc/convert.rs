//! Proto ↔ domain conversions, at the edge.

use time::OffsetDateTime;

use super::proto;
use crate::{
    application::{ApplicationError, FieldViolation, ListedSession, SignUpInput},
    domain::{
        AccessTokenClaims, ClientAddress, ClientContext, User, UserAgent, UserStatus, parse_client_address,
        ports::LiveSession,
    },
};

pub fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(at.nanosecond()).unwrap_or(0),
    }
}

pub fn user(user: &User) -> proto::User {
    let name = |n: Option<&crate::domain::PersonName>| n.map(|n| n.as_str().to_owned()).unwrap_or_default();
    proto::User {
        id: user.id().to_string(),
        email: user.email().as_str().to_owned(),
        display_name: name(user.display_name()),
        first_name: name(user.first_name()),
        last_name: name(user.last_name()),
        status: status(user.status()).into(),
        created_at: Some(timestamp(user.created_at())),
        verified_at: user.verified_at().map(timestamp),
        legacy_id: user.legacy_id().map(str::to_owned),
    }
}

pub fn status(status: UserStatus) -> proto::UserStatus {
    match status {
        UserStatus::PendingVerification => proto::UserStatus::PendingVerification,
        UserStatus::Active => proto::UserStatus::Active,
        UserStatus::Disabled => proto::UserStatus::Disabled,
    }
}

pub fn sign_up_input(request: proto::SignUpRequest) -> SignUpInput {
    SignUpInput {
        email: request.email,
        password: request.password,
        display_name: request.display_name,
        first_name: request.first_name,
        last_name: request.last_name,
    }
}

pub fn token_claims(claims: &AccessTokenClaims) -> proto::ValidateTokenResponse {
    proto::ValidateTokenResponse {
        user_id: claims.user_id.to_string(),
        expires_at: Some(timestamp(claims.expires_at)),
        issued_at: Some(timestamp(claims.issued_at)),
        not_before: Some(timestamp(claims.not_before)),
        issuer: claims.issuer.clone(),
        audience: claims.audience.clone(),
        token_id: claims.token_id.to_string(),
        key_id: claims.key_id.clone(),
        amr: claims.methods.amr().iter().map(|&m| m.to_owned()).collect(),
        auth_time: claims.authenticated_at.map(timestamp),
    }
}

/// The device behind a login or refresh: the caller's `client` message when
/// it sent one (its fields are the end user's, so an empty one means unknown,
/// never the backend's own), else the `user-agent` metadata and `transport`,
/// the address the call came from.
///
/// # Errors
/// INVALID_ARGUMENT for a `client` field out of bounds.
pub fn client_context(
    client: Option<proto::ClientInfo>,
    metadata: &tonic::metadata::MetadataMap,
    transport: Option<ClientAddress>,
) -> Result<ClientContext, ApplicationError> {
    let Some(client) = client else {
        let user_agent = metadata.get("user-agent").and_then(|v| v.to_str().ok()).and_then(UserAgent::lenient);
        return Ok(ClientContext { user_agent, address: transport });
    };
    let user_agent = UserAgent::parse_optional(&client.user_agent);
    let address = parse_client_address(&client.ip_address);
    match (user_agent, address) {
        (Ok(user_agent), Ok(address)) => Ok(ClientContext { user_agent, address }),
        (user_agent, address) => Err(ApplicationError::InvalidInput(
            [
                user_agent.err().map(|e| FieldViolation::new("client.user_agent", e)),
                address.err().map(|e| FieldViolation::new("client.ip_address", e)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        )),
    }
}

pub fn session(session: &LiveSession, is_current: bool) -> proto::Session {
    proto::Session {
        id: session.id.to_string(),
        created_at: Some(timestamp(session.created_at)),
        last_used_at: Some(timestamp(session.last_used_at)),
        expires_at: Some(timestamp(session.expires_at)),
        user_agent: session.context.user_agent.as_ref().map(|agent| agent.as_str().to_owned()).unwrap_or_default(),
        client_address: session.context.address.map(|address| address.to_string()).unwrap_or_default(),
        current: is_current,
    }
}

pub fn listed_session(listed: &ListedSession) -> proto::Session {
    session(&listed.session, listed.is_current)
}
