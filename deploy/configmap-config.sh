#!/usr/bin/env bash
# Prints the config.toml that k8s-deployment.yaml's ConfigMap carries, so that scripts can
# run the relay with exactly the production values:
#
#   deploy/configmap-config.sh [k8s-deployment.yaml] [relay-server binary] > config.toml
#
# With a relay binary that does not know `otlp_endpoint` yet (the key that configures
# OTLP tracing), that one line is left out and a note goes to stderr; every other key is
# kept, so a wrong key still fails the relay's start as it would in the cluster.
set -euo pipefail

yaml=${1:-"$(dirname "$0")/../k8s-deployment.yaml"}
relay=${2:-}

# The block scalar under `config.toml: |`, without its indentation.
config=$(awk '
  /^[[:space:]]*config\.toml:[[:space:]]*\|[[:space:]]*$/ {
    match($0, /^[[:space:]]*/); key_indent = RLENGTH; inside = 1; indent = -1; next
  }
  inside {
    if ($0 ~ /^[[:space:]]*$/) { print ""; next }
    match($0, /^[[:space:]]*/)
    if (RLENGTH <= key_indent) { inside = 0; next }
    if (indent < 0) indent = RLENGTH
    print substr($0, indent + 1)
  }
' "$yaml")
if [ -z "$config" ]; then
  echo "configmap-config: no config.toml block in $yaml" >&2
  exit 1
fi

if [ -n "$relay" ] && ! "$relay" --help | grep -q -- '--otlp-endpoint'; then
  echo "configmap-config: $relay has no otlp_endpoint setting yet; leaving that key out" >&2
  config=$(printf '%s\n' "$config" | grep -v '^otlp_endpoint[[:space:]]*=')
fi
printf '%s\n' "$config"
