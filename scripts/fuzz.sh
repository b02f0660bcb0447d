#!/usr/bin/env bash
# Builds every fuzz target of fuzz/ once (no sanitizer, so it works on the stable
# toolchain) and runs each for ${FUZZ_SECONDS:-30} seconds, ${FUZZ_JOBS:-2} at a time,
# on a scratch copy of its committed seed corpus (the tree stays clean). Fails on any
# crash, leak, timeout or out-of-memory, and keeps the failing input in
# fuzz/artifacts/<target>/. Prints executions and coverage per target.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_JOBS="${FUZZ_JOBS:-2}"
# cargo-fuzz defaults to one codegen unit per crate, which makes the build (the
# relay's dependency tree, SQLCipher, OpenSSL) the slowest part of the run on a small
# machine; more units build faster and cost little speed.
FUZZ_CODEGEN_UNITS="${FUZZ_CODEGEN_UNITS:-16}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

echo "== cargo fuzz build -s none --codegen-units $FUZZ_CODEGEN_UNITS"
cargo fuzz build -s none --codegen-units "$FUZZ_CODEGEN_UNITS"
bin_dir="target/$(rustc -vV | sed -n 's/^host: //p')/release"
mapfile -t targets < <(cargo fuzz list)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run_target() {
    local t="$1" dir="$work/$1"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp "corpus/$t/"* "$dir/corpus/"
    local rc=0
    "$bin_dir/$t" "$dir/corpus" \
        -max_total_time="$FUZZ_SECONDS" -timeout=60 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
        >"$dir/log" 2>&1 || rc=$?
    echo "$rc" >"$dir/rc"
}

echo "== running ${#targets[@]} targets for ${FUZZ_SECONDS}s each, ${FUZZ_JOBS} at a time"
running=0
for t in "${targets[@]}"; do
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$FUZZ_JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

failed=0
passed=0
printf '%-26s %12s %9s %8s %8s %s\n' target executions exec/s cov ft result
for t in "${targets[@]}"; do
    dir="$work/$t"
    rc="$(cat "$dir/rc")"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)"
    last="$(grep -E '^#[0-9]+' "$dir/log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    result=ok
    if [ "$rc" != 0 ] || compgen -G "$dir/artifacts/*" >/dev/null; then
        result="FAILED (exit $rc)"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
    printf '%-26s %12s %9s %8s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
done

if [ "$failed" != 0 ]; then
    for t in "${targets[@]}"; do
        dir="$work/$t"
        if [ "$(cat "$dir/rc")" != 0 ] || compgen -G "$dir/artifacts/*" >/dev/null; then
            echo "== $t failed; last lines of its log:"
            tail -n 60 "$dir/log"
            mkdir -p "artifacts/$t"
            cp "$dir/artifacts/"* "artifacts/$t/" 2>/dev/null || true
            echo "== failing inputs kept in fuzz/artifacts/$t/ (reproduce: cd fuzz && cargo fuzz run -s none $t artifacts/$t/<file>)"
        fi
    done
    echo "fuzz: $passed passed, $failed failed"
    exit 1
fi
echo "== every fuzz target ran without a crash"
echo "fuzz: $passed passed, 0 failed"
