#!/usr/bin/env bash
# What the pg_notify in the relay's send transaction costs PostgreSQL: pgbench runs the
# relay's message INSERT in a transaction, with and without `SELECT pg_notify(...)`, at
# 1, 4 and 16 concurrent clients on a fresh database with the relay's schema. (PostgreSQL
# serialises the commits of every transaction that issued a NOTIFY.) Loopback only;
# about a minute. Used by docs/scaling.md.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ensure-postgres.sh
cargo build -p relay-server --bin relay-server
bin="${CARGO_TARGET_DIR:-target}/debug/relay-server"
psql_admin=(psql -q -h 127.0.0.1 -U postgres -d postgres)
db="relay_notify_bench_$$"
work=$(mktemp -d)
relay_pid=""
cleanup() {
  if [ -n "$relay_pid" ]; then kill -KILL "$relay_pid" 2>/dev/null || true; fi
  "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"${psql_admin[@]}" -c "CREATE DATABASE $db"

# The relay creates its schema at start: run it until it listens, then stop it.
RELAY_STORAGE=postgres RELAY_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/$db" \
  RELAY_LISTEN=127.0.0.1:0 RELAY_LOG_FORMAT=json "$bin" --config /dev/null > "$work/relay.log" 2>&1 &
relay_pid=$!
for _ in $(seq 1 150); do grep -q 'relay listening' "$work/relay.log" && break; sleep 0.2; done
grep -q 'relay listening' "$work/relay.log" || { cat "$work/relay.log" >&2; exit 1; }
kill -TERM "$relay_pid"; wait "$relay_pid" || true; relay_pid=""

# The INSERT of PostgresStore::store_messages (one recipient device, 256-byte body).
body=$(printf '%0512d' 0)
cat > "$work/plain.sql" <<SQL
\set r random(1, 20000)
\set m random(1, 1000000000)
BEGIN;
INSERT INTO messages (account, device, sender, sender_device, message_id, body, created_at)
VALUES ('acct-' || :r, 1, 'sender-' || :client_id, 1, 'm-' || :client_id || '-' || :m,
        '\\x$body'::bytea, 1700000000) ON CONFLICT DO NOTHING;
COMMIT;
SQL
sed 's/^COMMIT;$/SELECT pg_notify('\''relay_messages'\'', '\''1:acct-'\'' || :r);\nCOMMIT;/' \
  "$work/plain.sql" > "$work/notify.sql"

printf '%-8s %-22s %s\n' clients "insert (tps)" "insert + pg_notify (tps)"
for clients in 1 4 16; do
  tps() { pgbench -n -h 127.0.0.1 -U postgres -c "$clients" -j "$(( clients < 2 ? clients : 2 ))" -T 10 -f "$work/$1.sql" "$db" 2>&1 \
            | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
  printf '%-8s %-22s %s\n' "$clients" "$(tps plain)" "$(tps notify)"
done
