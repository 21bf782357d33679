#!/usr/bin/env bash
# Directions in the latent space of a shipped model, fitted on prior samples and on training images, timed.
#   bash benchmarks/directions.sh [MODEL] [OUT]      (default: mnist, /tmp/directions)
# Prints each source's table (direction against the best single dimension) and its wall time; paste into
# docs/results/latent-factors.md with the date, the machine (lscpu) and the commit.
set -euo pipefail
model=${1:-mnist}
out=${2:-/tmp/directions}
bin=${VAELAB:-.venv/bin/vaelab}
for source in generated encoded; do
  rm -rf "$out/$model-$source"
  "$bin" copy-pretrained "$model" "$out/$model-$source" > /dev/null
  start=$(date +%s.%N)
  "$bin" directions "$out/$model-$source" --source "$source" 2> /dev/null | sed -n '/^attribute/,$p'
  echo "source $source: $(echo "$(date +%s.%N) - $start" | bc) s"
done
