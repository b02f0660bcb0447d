#!/usr/bin/env bash
# Installs the command-line tools the Rust tests run (they fail, not skip, without
# them): strace, which session-store/tests/durability.rs uses to count the fsync calls
# of encrypt commits. Installs with apt-get when run as root; otherwise fails loudly.
set -euo pipefail

missing=()
for tool in strace; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: installing ${missing[*]} with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "ensure-tools: ${missing[*]} not installed and cannot be installed here (need root and apt-get)" >&2
  exit 1
fi
for tool in "${missing[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "ensure-tools: $tool still missing" >&2; exit 1; }
done
