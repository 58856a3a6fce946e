#!/usr/bin/env bash
# GPU figures for the README in one run: under 8 minutes on one GPU (each section has a hard time limit).
#
#   bash benchmarks/gpu_suite.sh              # on a machine with CUDA; sections needing CUDA are skipped without
#   bash benchmarks/gpu_suite.sh --dry-run    # every section on the CPU at tiny sizes: checks that all of it runs
#
# Sections (all from the repository root, with src/ on PYTHONPATH):
#   1. prediction     benchmarks/gpu_suite.py predict: L = 256 and 1,024 tokens, fp32 and bf16, reference
#                     formulation vs seqdance.predict (residue + pair, residue only)                  [limit 120 s]
#   2. scoring        benchmarks/bench_scoring.py --device cuda: saturation-scan variants/s, reference loop vs
#                     seqdance with 23 properties and the residue-only path                            [limit 120 s]
#   3. training       benchmarks/bench_training.py --cuda-only: one step's tokens/s, fp32 and mixed precision,
#                     reference-style step vs seqdance                                                 [limit 150 s]
#   4. SASA           benchmarks/gpu_suite.py sasa: the torch SASA path on the GPU vs the CPU kernel   [limit  60 s]
# The limits add up to 7.5 minutes. A section that fails or runs out of time is reported and the others still run;
# the exit status is the number of sections that failed.

set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"

DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "usage: bash benchmarks/gpu_suite.sh [--dry-run]" >&2; exit 2 ;;
esac

if ! HAS_CUDA=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null); then
  echo "cannot import torch with $PYTHON" >&2
  exit 1
fi

echo "seqdance GPU suite: $(date -u '+%Y-%m-%d %H:%M UTC'), $("$PYTHON" -c 'import torch; print("torch", torch.__version__)')"
if [ "$HAS_CUDA" = 1 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
fi

FAILED=0
SUMMARY=()
SUITE_START=$(date +%s)

# section NAME LIMIT_SECONDS COMMAND...
section() {
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== $name ==="
  local start rc
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local took=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ]; then
    SUMMARY+=("$name: ok (${took} s)")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    SUMMARY+=("$name: STOPPED at its ${limit} s limit")
    FAILED=$((FAILED + 1))
  else
    SUMMARY+=("$name: FAILED (exit $rc, ${took} s)")
    FAILED=$((FAILED + 1))
  fi
}

skip() {
  echo
  echo "=== $1 ==="
  echo "skipped: CUDA is not available in this torch build / machine (run with --dry-run to check the CPU-safe parts)"
  SUMMARY+=("$1: skipped (no CUDA)")
}

if [ "$HAS_CUDA" = 1 ] && [ "$DRY_RUN" = 0 ]; then
  section "prediction" 120 "$PYTHON" benchmarks/gpu_suite.py predict --device cuda
  section "scoring" 120 "$PYTHON" benchmarks/bench_scoring.py --device cuda
  section "training" 150 "$PYTHON" benchmarks/bench_training.py --cuda-only
  section "SASA" 60 "$PYTHON" benchmarks/gpu_suite.py sasa --device cuda
elif [ "$DRY_RUN" = 1 ]; then
  echo "dry run: every section on the CPU at tiny sizes (no figures to report)"
  section "prediction" 120 "$PYTHON" benchmarks/gpu_suite.py predict --device cpu --tiny
  section "scoring" 120 "$PYTHON" benchmarks/bench_scoring.py --device cpu --tiny --length 12 --threads 1
  section "training" 150 "$PYTHON" benchmarks/bench_training.py --cpu-only --batch 1 --tokens 16 --steps 1
  section "SASA" 60 "$PYTHON" benchmarks/gpu_suite.py sasa --device cpu --tiny
else
  for name in prediction scoring training SASA; do
    skip "$name"
  done
fi

echo
echo "=== summary ($(( $(date +%s) - SUITE_START )) s) ==="
for line in "${SUMMARY[@]}"; do
  echo "  $line"
done
exit "$FAILED"
