# syntax=docker/dockerfile:1
#
# relay-server container image.
#
#   docker build -t relay-server:0.1.0 .
#   docker run -p 8080:8080 -v relay-data:/var/lib/relay relay-server:0.1.0
#
# Build stage: the workspace's Rust toolchain (rust-version 1.95), pinned by tag. Runtime
# stage: Debian bookworm slim, the same Debian release as the build stage (so the glibc
# the binaries were linked against is there), with only the relay, the C ABI library, a
# health-check script and the single-node config, run as an unprivileged user.
# For production, pin both images by digest as well (NAME:TAG@sha256:...) once pulled.
#
# The build steps live in deploy/build-layout.sh so that scripts/check-deploy.sh (lint
# with hadolint, then the same build and a start of the result) runs them without Docker.

FROM rust:1.95.0-slim-bookworm AS build

# make and perl build the OpenSSL that rusqlite vendors for SQLCipher (session-store,
# linked into libsignal_crypto_lib.so).
# DL3008 (pin apt package versions) is ignored: the versions are fixed by the pinned
# Debian release of the base image plus its security updates, and an exact pin would
# break the build as soon as a security update replaces that version in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make perl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# The registry and target caches only speed up rebuilds; the layout copied into the
# runtime stage is written to /out, outside the caches.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    ./deploy/build-layout.sh /out

FROM debian:bookworm-slim

COPY --from=build /out/ /

# A fixed numeric UID/GID, so that Kubernetes' runAsNonRoot can check it and a volume's
# ownership is predictable. /var/lib/relay holds the SQLite database in the single-node
# shape (mount a volume there); with PostgreSQL the relay writes no file at all.
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --home-dir /var/lib/relay \
        --no-create-home --shell /usr/sbin/nologin relay \
    && install -d -o relay -g relay -m 0750 /var/lib/relay \
    && ldconfig

USER 10001:10001
WORKDIR /var/lib/relay
EXPOSE 8080

# GET /healthz through bash's /dev/tcp: no HTTP client is added to the image (see the
# script). start-period covers schema migrations, which run before the port is bound.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/relay-healthcheck"]

# SIGTERM (Docker's and Kubernetes' stop signal) starts the relay's graceful shutdown.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/relay-server"]
CMD ["--config", "/etc/relay/config.toml"]
