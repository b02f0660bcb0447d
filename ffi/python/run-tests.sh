#!/usr/bin/env bash
# Builds libsignal_crypto_lib.so and runs the Python package's pytest suite against it.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -p ffi --lib
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$(pwd)/$TARGET_DIR" ;; esac
export SIGNAL_CRYPTO_LIB="${SIGNAL_CRYPTO_LIB:-$TARGET_DIR/debug/libsignal_crypto_lib.so}"
test -f "$SIGNAL_CRYPTO_LIB" || { echo "no library at $SIGNAL_CRYPTO_LIB" >&2; exit 1; }

if ! python3 -c "import pytest" 2>/dev/null; then
    python3 -m pip install --quiet pytest || python3 -m pip install --quiet --break-system-packages pytest
fi
cd ffi/python
python3 -m pytest -q tests "$@"
