#!/usr/bin/env bash
# Builds relay-server and the C ABI library (release) and lays out the files of the
# runtime image under DEST, exactly as they land in the image:
#
#   DEST/usr/local/bin/relay-server
#   DEST/usr/local/bin/relay-healthcheck
#   DEST/usr/local/lib/libsignal_crypto_lib.so
#   DEST/etc/relay/config.toml
#
# The Dockerfile's build stage runs this and copies DEST into the runtime stage;
# scripts/check-deploy.sh runs it outside Docker, so both take the same steps.
set -euo pipefail

dest=${1:?usage: deploy/build-layout.sh DEST}
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

cargo build --release --locked -p relay-server -p ffi

install -D -m 0755 "$target/release/relay-server" "$dest/usr/local/bin/relay-server"
install -D -m 0755 deploy/relay-healthcheck "$dest/usr/local/bin/relay-healthcheck"
install -D -m 0644 "$target/release/libsignal_crypto_lib.so" "$dest/usr/local/lib/libsignal_crypto_lib.so"
install -D -m 0644 deploy/config.toml "$dest/etc/relay/config.toml"
