//! Compiles the protobuf contract into the tonic server and client, writes the
//! descriptor set that server reflection serves to grpcurl, and compiles the
//! events published to other services.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    // A vendored protoc, so that a fresh machine needs no system install; given
    // to prost-build directly, so no environment variable needs setting.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("identity_descriptor.bin"))
        // Messages that carry passwords or tokens get hand-written, redacting Debug
        // impls (src/grpc/redacted_debug.rs) so that they never reach a log.
        .skip_debug([
            ".identity.v1.SignUpRequest",
            ".identity.v1.LoginRequest",
            ".identity.v1.LoginResponse",
            ".identity.v1.VerifyEmailRequest",
            ".identity.v1.ValidateTokenRequest",
            ".identity.v1.RefreshSessionRequest",
            ".identity.v1.RefreshSessionResponse",
            ".identity.v1.LogoutRequest",
            ".identity.v1.ChangePasswordRequest",
            ".identity.v1.ResetPasswordRequest",
            ".identity.v1.RequestEmailChangeRequest",
            ".identity.v1.ConfirmEmailChangeRequest",
            ".identity.v1.CompleteMfaLoginRequest",
            ".identity.v1.BeginTotpEnrollmentRequest",
            ".identity.v1.BeginTotpEnrollmentResponse",
            ".identity.v1.ConfirmTotpEnrollmentRequest",
            ".identity.v1.ConfirmTotpEnrollmentResponse",
            ".identity.v1.DisableTotpRequest",
            ".identity.v1.RegenerateRecoveryCodesRequest",
            ".identity.v1.RegenerateRecoveryCodesResponse",
        ])
        .compile_with_config(
            config,
            &["proto/identity/v1/user_service.proto", "proto/identity/v1/admin_service.proto"],
            &["proto"],
        )?;

    // The events other services consume: messages only, no service, so plain
    // prost in a directory of their own (the package is the same, and so would
    // be the generated file's name). The outbox encodes them; tests decode them.
    let events_dir = out_dir.join("events");
    std::fs::create_dir_all(&events_dir)?;
    let mut events = tonic_prost_build::Config::new();
    events.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    events.out_dir(&events_dir);
    events.compile_protos(&["proto/identity/v1/events.proto"], &["proto"])?;
    Ok(())
}
