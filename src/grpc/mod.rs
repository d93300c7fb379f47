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

pub use admin_service::AdminGrpcService;
pub use user_service::UserGrpcService;
