#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): banned/duplicate crates, licenses
# against the allow-list, and crate sources. Runs offline against the local cargo
# registry cache. The `advisories` check needs the advisory database from the network
# and is deliberately not run here.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
    echo "== installing cargo-deny"
    cargo install --locked cargo-deny
fi

# cargo-deny reads every crate's manifest, for every platform: make sure they are all
# in the local cache (no network when they already are).
cargo fetch --locked --offline >/dev/null 2>&1 || cargo fetch --locked

cargo deny --offline check bans licenses sources
