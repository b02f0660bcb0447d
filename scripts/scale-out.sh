#!/usr/bin/env bash
# Scale-out proof: three relay-server processes on one fresh PostgreSQL database with
# the production config of k8s-deployment.yaml, clients on all three, a continuous send
# and bundle-fetch load through a rolling restart (SIGTERM, one replica at a time) and a
# SIGKILL of one replica; then exactly-once delivery, per-sender order and one-time
# prekey uniqueness are checked (relay-server/src/bin/relay-scaleout.rs). Loopback only;
# about 1.5 minutes of run time after the build. Exits non-zero if a check fails.
#
#   scripts/scale-out.sh                # debug build (what scripts/test.sh already built)
#   scripts/scale-out.sh --release      # release build, for numbers worth quoting
#   scripts/scale-out.sh -- --rate 300  # flags after -- go to relay-scaleout (--help)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
cargo_flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release; cargo_flags=(--release); shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done

./scripts/ensure-postgres.sh
cargo build "${cargo_flags[@]}" -p relay-server --bin relay-server --bin relay-scaleout

bin="${CARGO_TARGET_DIR:-target}/$profile"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deploy/configmap-config.sh k8s-deployment.yaml "$bin/relay-server" > "$work/config.toml"

"$bin/relay-scaleout" --config "$work/config.toml" --relay-bin "$bin/relay-server" \
  --postgres-admin-url "${RELAY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}" "$@"
