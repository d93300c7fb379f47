//! The transport: the only module that knows tonic. Handlers parse the request
//! into a command, execute the use case, convert the result, and `?` errors
//! through the one mapping in `status.rs`.

pub mod admin_service;
pub mod call_limits;
pub mod convert;
pub mod health;
pub mod mailer_health;
mod redacted_debug;
pub mod request_context;
pub mod status;
pub mod tls;
pub mod user_service;

/// The generated protobuf types, client and server.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("identity.v1");

    /// Descriptor set for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("identity_descriptor");
}

/// The descriptor sets registered with the reflection service (which adds its
/// own): every service the server routes to is in one of them.
pub const REFLECTED_DESCRIPTOR_SETS: &[&[u8]] =
    &[proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET, tonic_types::pb::FILE_DESCRIPTOR_SET];

/// The methods the server serves: those of the reflected descriptor sets and
/// of the reflection services themselves.
///
/// # Errors
/// A descriptor set that does not decode.
pub fn served_methods() -> anyhow::Result<request_context::ServedMethods> {
    let mut sets = REFLECTED_DESCRIPTOR_SETS.to_vec();
    sets.extend([tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET, tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET]);
    request_context::ServedMethods::from_descriptor_sets(&sets)
}

pub use admin_service::AdminGrpcService;
pub use user_service::UserGrpcService;
