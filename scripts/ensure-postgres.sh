#!/usr/bin/env bash
# Makes sure PostgreSQL answers at 127.0.0.1:5432 (user postgres, trust auth, database
# `test`), as the relay-server tests need: starts the local cluster or installs it with
# apt if it is not running. Exits non-zero with a clear message if it cannot.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$HOST" -p "$PORT"
  elif command -v psql >/dev/null 2>&1; then
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
  fi
}

start_cluster() {
  command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  [ -n "$version" ] || return 1
  local conf="/etc/postgresql/$version/main"
  # Trust local TCP connections (a throwaway test cluster) and listen on 127.0.0.1.
  if [ -f "$conf/pg_hba.conf" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  for _ in $(seq 1 30); do ready && return 0; sleep 1; done
  return 1
}

ensure_test_db() {
  command -v psql >/dev/null 2>&1 || return 0
  if ! psql -h "$HOST" -p "$PORT" -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
  fi
}

if ready; then ensure_test_db; exit 0; fi
echo "ensure-postgres: nothing at $HOST:$PORT; trying to start the local cluster" >&2
if start_cluster; then ensure_test_db; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: installing postgresql with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  if start_cluster; then ensure_test_db; exit 0; fi
fi
echo "ensure-postgres: PostgreSQL is not reachable at $HOST:$PORT and could not be started or installed." >&2
echo "The relay-server tests need it (user postgres, trust auth, database 'test'); set RELAY_TEST_POSTGRES_URL to use another server." >&2
exit 1
