//! Proto ↔ domain conversions, at the edge.

use time::OffsetDateTime;

use super::proto;
use crate::{
    application::SignUpInput,
    domain::{AccessTokenClaims, User, UserStatus},
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
