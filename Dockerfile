# syntax=docker/dockerfile:1
#
# The identity service image: identity-server (gRPC API; also `migrate` and
# `generate-key`) and identity-mailer, both in one small image.
#
#   docker build -t identity:0.1.0 --build-arg VERSION=0.1.0 .
#
# Stages: `chef` (toolchain + cargo-chef) -> `planner` (dependency recipe from the
# manifests) -> `builder` (dependencies cooked in their own layer, then our sources)
# -> `runtime` (distroless, no shell, non-root). Editing src/ reuses the cooked
# dependency layer; only Cargo.toml/Cargo.lock changes rebuild it.
# `.ci/check-deploy` lints this file with hadolint and checks that every COPY
# source exists and every binary is a [[bin]] of Cargo.toml.

# ---- chef: the Rust toolchain (rust-version in Cargo.toml) plus a pinned cargo-chef.
# rust:*-slim ships gcc and libc6-dev (ring, bundled SQLite); protoc comes from the
# protoc-bin-vendored crate, so no system package is needed.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78 \
    && rm -rf "$CARGO_HOME/registry"
WORKDIR /build

# ---- planner: a recipe of the dependency graph. Its output only changes when the
# manifests or lock file do, which is what keeps the cook layer cached.
FROM chef AS planner
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY migrations migrations
# Workspace members that the image does not ship: cargo loads every member's
# manifest, so they must be there, although only the service is built.
COPY bench bench
COPY testkit testkit
COPY proto proto
COPY src src
COPY templates templates
RUN cargo chef prepare --recipe-path recipe.json

# ---- builder: dependencies first (cached layer), then the workspace itself.
FROM chef AS builder
# The image gets whole-program (fat) LTO and one codegen unit: smaller and faster
# binaries, worth the longer build here (Cargo.toml's release profile uses thin LTO
# so that `cargo run --release` stays quick on a laptop).
ENV CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        --bin identity-server --bin identity-mailer
# build.rs compiles the proto contract; askama reads templates/ at compile time.
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY migrations migrations
COPY bench bench
COPY testkit testkit
COPY proto proto
COPY src src
COPY templates templates
RUN cargo build --release --locked --bin identity-server --bin identity-mailer

# ---- runtime: glibc + libgcc + CA certificates, nothing else (no shell, so no
# HEALTHCHECK: Kubernetes probes the grpc.health.v1 service natively, see the chart).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG SOURCE_URL=""
ARG REVISION=""
LABEL org.opencontainers.image.title="identity" \
      org.opencontainers.image.description="User identity over gRPC: signup, email verification, login, PASETO tokens; plus the identity-mailer" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /build/target/release/identity-server /usr/local/bin/identity-server
COPY --from=builder /build/target/release/identity-mailer /usr/local/bin/identity-mailer
# Listen on all interfaces inside the container (the binaries default to loopback).
ENV IDENTITY_GRPC_ADDR=0.0.0.0:50051 \
    IDENTITY_MAILER_HEALTH_ADDR=0.0.0.0:50052 \
    IDENTITY_METRICS_ADDR=0.0.0.0:9464 \
    IDENTITY_LOG_FORMAT=json
# distroless "nonroot" is uid/gid 65532; its home is writable for a throwaway SQLite
# file when the image is tried without a database.
WORKDIR /home/nonroot
USER 65532:65532
# 50051 gRPC API, 50052 mailer gRPC health, 9464 Prometheus metrics (either binary).
EXPOSE 50051 50052 9464
ENTRYPOINT ["/usr/local/bin/identity-server"]
CMD ["serve"]
