# syntax=docker/dockerfile:1
#
# keyrelay: one static binary (musl, rustls: no OpenSSL, no libc at run time) on a
# distroless base with no shell, running as uid 65532. The same image serves the
# sidecar (`keyrelay run`, the default) and the injector (`keyrelay webhook`).
#
#   docker build -t ghcr.io/keyrelay/keyrelay:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .

ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS build
# Set by buildx; each platform compiles natively (under emulation if need be), so
# ring's C parts never need a cross compiler.
ARG TARGETARCH
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture: ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src
# Cargo.toml names the benches, so they must exist for the manifest to load.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin keyrelay --target "$(cat /rust-target)" \
    && cp "target/$(cat /rust-target)/release/keyrelay" /keyrelay \
    && /keyrelay --version

# distroless/static: CA certificates, /etc/passwd with `nonroot`, tzdata; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="keyrelay" \
      org.opencontainers.image.description="Sidecar proxy that balances LLM API traffic over pools of keys" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /keyrelay /keyrelay
USER 65532:65532
# 4000: app port (the sidecar binds it on 127.0.0.1), 9901: admin, 8443: webhook.
EXPOSE 4000 9901 8443
ENTRYPOINT ["/keyrelay"]
