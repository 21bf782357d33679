#!/usr/bin/env bash
# Times what a new user does by following the guide's "Getting started" and "Your own images" pages, as on a fresh
# machine (a fresh clone of this checkout, a new venv, no pip cache, a new data folder and npm cache): `make demo`,
# the explorer of pretrained:mnist answering in a browser's place, a folder of shapes trained for the guide's
# minute, then its explorer answering. Each step prints the seconds since the start.
#
#     benchmarks/new_user.sh /tmp/new-user
set -euo pipefail
work=$1
rm -rf "$work" && git clone -q "$(git rev-parse --show-toplevel)" "$work/clone"
cd "$work/clone"
export VAELAB_DATA=$work/data npm_config_cache=$work/npm PIP_NO_CACHE_DIR=1
start=$(date +%s)
step() { echo "$(( $(date +%s) - start )) s: $*"; }

explorer_answers() {  # RUN PORT: start the explorer, wait until its page and /api/info answer, stop it
  .venv/bin/vaelab explore "$1" --port "$2" > "$work/explore-$2.log" 2>&1 &
  local server=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$2/" -o /dev/null && break; sleep 1; done
  curl -sf "http://127.0.0.1:$2/api/info" | head -c 120; echo
  kill "$server"; wait "$server" 2>/dev/null || true
}

make demo > "$work/demo.log" 2>&1
step "make demo done"
explorer_answers pretrained:mnist 8765
step "the explorer of pretrained:mnist answers"
.venv/bin/vaelab data shapes shapes
.venv/bin/vaelab train --dataset folder:shapes --time-budget 1m --out runs/shapes > "$work/train.log" 2>&1
step "a model of a folder of images trained"
explorer_answers runs/shapes 8766
step "its explorer answers"
