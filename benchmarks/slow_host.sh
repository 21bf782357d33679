#!/usr/bin/env bash
# Runs a command as on a slow 2-core host without native bf16 (AVX2 only), on a fast one: one core, shared with a
# busy loop, one thread, and the kernels of ATen, oneDNN and MKL capped at AVX2, so `--precision auto` chooses fp32.
# The demo model then trains at about 570 images/s, against 590–700 on a 2-core AMD EPYC (Zen 2) host.
#
#     benchmarks/slow_host.sh .venv/bin/python benchmarks/quality_per_minute.py --budget 4m
#     CORE=0 benchmarks/slow_host.sh make demo
set -euo pipefail
CORE=${CORE:-1}
taskset -c "$CORE" python3 -c "while True: pass" &
BUSY=$!
trap 'kill $BUSY' EXIT
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=1 \
  taskset -c "$CORE" "$@"
