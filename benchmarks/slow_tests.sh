#!/usr/bin/env bash
# The test suite (make test's pytest line) as on a slow 2-core AVX2 host: each core shared with a busy loop, the
# kernels capped at AVX2 (so precision auto chooses fp32). Run from a checkout whose venv has the dev extras.
taskset -c 0 python3 -c "while True: pass" & A=$!
taskset -c 1 python3 -c "while True: pass" & B=$!
trap "kill $A $B" EXIT
start=$(date +%s.%N)
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/pytest -m "not slow" -n 2 --nbmake tests docs/tutorials --durations=15 -p no:cacheprovider
echo "tests: $(echo "$(date +%s.%N) - $start" | bc) s"
