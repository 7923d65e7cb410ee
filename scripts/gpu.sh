#!/usr/bin/env bash
# The GPU check: every measurement that needs a CUDA device, one command, at most ~8 minutes on one H100.
#
#   bash scripts/gpu.sh [--dry-run] [--out DIR] [--only STEP[,STEP...]]
#
# Each step is `python -m bench.gpu_bench STEP` (bench/gpu_bench.py says what each measures) under a hard time box
# (BOX, seconds; the step's own soft box is MARGIN seconds shorter, so it stops starting new items in time).
# Writes DIR/<step>.csv with provenance columns, DIR/logs/<step>.log, and DIR/steps.csv: each step's exit code,
# seconds and status. DIR defaults to tables/gpu, or .cache/gpu-dry-run with --dry-run, which runs the same steps on
# the CPU with tiny models and one iteration each (under a minute) to show the script works before a GPU is lent; its
# time boxes are DRY_BOX_FACTOR times longer, since it checks the script, not a timing, on a CPU that may be busy.
# Python: $PYTHON, else .venv/bin/python, else python3. Exit code 0 when every step exits 0, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

STEPS=(pytest efficiency memory autoencoders train-step sampling)
declare -A BOX=([pytest]=30 [efficiency]=200 [memory]=50 [autoencoders]=110 [train-step]=25 [sampling]=45)
MARGIN=10
DRY_BOX_FACTOR=4
USAGE="usage: bash scripts/gpu.sh [--dry-run] [--out DIR] [--only STEP[,STEP...]] (steps: ${STEPS[*]})"

dry="" out="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry="--dry-run" ;;
    --out|--only)
      [ $# -ge 2 ] || { echo "error: $1 needs a value; $USAGE" >&2; exit 2; }
      if [ "$1" = --out ]; then out=$2; else only=$2; fi
      shift ;;
    -h|--help) echo "$USAGE"; exit 0 ;;
    *) echo "error: unknown argument '$1'; $USAGE" >&2; exit 2 ;;
  esac
  shift
done
for step in ${only//,/ }; do
  [ -n "${BOX[$step]+set}" ] || { echo "error: --only: unknown step '$step'; $USAGE" >&2; exit 2; }
done
out=${out:-$([ -n "$dry" ] && echo .cache/gpu-dry-run || echo tables/gpu)}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if [ -z "$dry" ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: $PY sees no CUDA device; run with --dry-run to check the script on a CPU" >&2
  exit 2
fi

factor=$([ -n "$dry" ] && echo "$DRY_BOX_FACTOR" || echo 1)
mkdir -p "$out/logs"
rows=() failed=0 t_start=$(date +%s)
for step in "${STEPS[@]}"; do
  [ -z "$only" ] || [[ ",$only," == *",$step,"* ]] || continue
  box=$(( ${BOX[$step]} * factor ))
  echo "== $step (time box ${box} s)"
  t0=$(date +%s)
  timeout -k 10 "$box" "$PY" -m bench.gpu_bench "$step" --out "$out" --budget-s $((box - MARGIN)) $dry 2>&1 \
    | tee "$out/logs/$step.log"
  rc=${PIPESTATUS[0]}
  seconds=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124|137) status="timed out at its ${box} s box" ;;
    *) status="failed (exit $rc)" ;;
  esac
  [ "$rc" = 0 ] || failed=1
  echo "== $step: $status in ${seconds} s"
  rows+=("$step,$rc,$seconds,$status")
done

# steps.csv: one row per step, then the provenance columns of the last step that wrote them.
prov_head="" prov_row=""
if [ -f "$out/provenance.csv" ]; then
  prov_head=$(sed -n 1p "$out/provenance.csv") prov_row=$(sed -n 2p "$out/provenance.csv")
fi
{
  echo "step,exit_code,seconds,status,$prov_head"
  for row in "${rows[@]}"; do echo "$row,$prov_row"; done
} > "$out/steps.csv"
echo "== gpu.sh: $(( $(date +%s) - t_start )) s; CSVs in $out:"
ls "$out"
exit "$failed"
