#!/usr/bin/env bash
# Runs every test of the workspace. Works on a fresh machine with the Rust toolchain:
# it installs or starts whatever the tests need, and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

# Property tests: at least 1,000 cases each unless the caller asks for more.
export PROPTEST_CASES="${PROPTEST_CASES:-1000}"

# The relay's tests run against a real PostgreSQL: make sure one answers on
# 127.0.0.1:5432 (starting or installing it if needed), or fail with a clear message.
./scripts/ensure-postgres.sh

# Tools the tests run (strace counts the syncs of store commits); installed if missing.
./scripts/ensure-tools.sh

# Unit, integration and doc tests; benches and examples are built and run once in
# test mode so they cannot rot.
cargo test --workspace --all-targets
cargo test --workspace --doc

# C ABI: the C client (natively and under valgrind) and the Python package against the .so.
./ffi/tests/run-c-tests.sh
./ffi/python/run-tests.sh

# The messenger's interactive chat, driven in tmux panes (installs tmux if missing).
./examples/secure_messenger/tests/chat-tmux.sh

# Scale-out proof: three relay processes on one PostgreSQL through a rolling restart and
# a SIGKILL (exactly-once delivery, per-sender order, one-time keys handed out once).
./scripts/scale-out.sh
