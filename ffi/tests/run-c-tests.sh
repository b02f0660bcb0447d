#!/usr/bin/env bash
# Builds libsignal_crypto_lib.so, compiles the C client test against the checked-in
# header, runs it, then runs it again under valgrind (0 leaks, 0 errors required).
set -euo pipefail
cd "$(dirname "$0")/../.."

PROFILE_DIR="${CARGO_TARGET_DIR:-target}/debug"
cargo build -p ffi --lib
LIB_DIR="$(cd "$PROFILE_DIR" && pwd)"
test -f "$LIB_DIR/libsignal_crypto_lib.so" || { echo "libsignal_crypto_lib.so not built in $LIB_DIR" >&2; exit 1; }

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -g -O1 \
    -I ffi/include ffi/tests/test_client.c \
    -L "$LIB_DIR" -lsignal_crypto_lib -Wl,-rpath,"$LIB_DIR" \
    -o "$OUT/test_client"

echo "== C client"
"$OUT/test_client"

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq valgrind
    else
        echo "valgrind is not installed and cannot be installed here (need root and apt-get)" >&2
        exit 1
    fi
fi

echo "== C client under valgrind"
valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 \
    "$OUT/test_client"
