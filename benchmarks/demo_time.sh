#!/usr/bin/env bash
# Times `make demo` as on a fresh machine: a fresh clone of this checkout, a new venv, no pip cache, a new data
# folder and npm cache. Each output line is prefixed with the seconds since the start. An optional command runs
# `make` under it (the slow-host emulation):
#
#     benchmarks/demo_time.sh /tmp/demo-fast
#     benchmarks/demo_time.sh /tmp/demo-slow benchmarks/slow_host.sh
set -euo pipefail
work=$1; shift
wrapper=()
for arg in "$@"; do wrapper+=("$(realpath "$arg")"); done
rm -rf "$work" && git clone -q "$(git rev-parse --show-toplevel)" "$work/clone"
cd "$work/clone"
export VAELAB_DATA=$work/data npm_config_cache=$work/npm PIP_NO_CACHE_DIR=1
start=$(date +%s.%N)
"${wrapper[@]}" make demo 2>&1 | while IFS= read -r line; do
  printf '%7.1f  %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
done
echo "whole make demo: $(echo "$(date +%s.%N) - $start" | bc) s"
