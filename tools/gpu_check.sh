#!/usr/bin/env bash
# `make gpu-check`: the lab's GPU figures on a node without internet, from the repository root.
#
#   make bundle DATA=PATH        (here, with internet: .bundle/ with the wheels and a CIFAR-10 subset)
#   copy the checkout with .bundle/ to the node, then there:
#   make gpu-check               (or: bash tools/gpu_check.sh)
#
# First a preflight (`python -m lablib info --preflight`): the GPU, a C and a C++ compiler, Python.h,
# the CUDA toolkit, a writable HOME and Jupyter runtime folder, free disk; what is missing turns off the
# steps and parts that need it, one line each with the fix. Then a plan against the budget: each step's
# time is estimated from tools/gpu_check_costs.json (tools/gpu_budget.py), and the steps run in order
# of value, so a check cut short still returns the first parts:
#   1. pytest-cuda      every CUDA-marked test (the compiled one only when the budget allows)
#   2. bench            make bench's figures on this device (instrumentation, loader, notebook overhead)
#   3. report-<section> the report's timing sections on the subset (profile gpu), one step each:
#                       C2, C3's sweep, C4's GPU point, C5, C7, C10, E2 (records only)
#   4. x-fast           X-FAST: faithful (C3's best point, measured by then) vs fast mode, compile, MFU
#   5. compile          P-2025-C8: eager, default and reduce-overhead (max-autotune when the budget allows)
#   6. records.tar.gz + summary.md: the run records (model files left out); what ran (status, seconds,
#                       estimate), what was skipped and why
# Before a step starts it is planned again with the time actually left: a step whose estimate does not
# fit is skipped and listed with its reason, never started to time out; a started step gets a hard limit
# (its estimate x 1.5 + 20 s, capped by what is left). Bring records.tar.gz back and stitch it where TeX is:
#   make report PROFILE=gpu RECORDS=gpu-check/records.tar.gz
#
# Each step's process gets the switches of its plan (lablib/core/switches.py reads them):
#   LABLIB_NO_COMPILE=1        no torch.compile at all (X-FAST uncompiled, E2 eager only, the compiled test
#                              deselected), when the preflight finds no compiler or no Python.h
#   LABLIB_NO_AOTI=1           C10 without AOTInductor (no CUDA toolkit, or not within the budget)
#   LABLIB_NO_CPU_COMPILE=1    E2 without its CPU timings and their compiles (not within the budget)
#   LABLIB_COMPILE_MODES=eager,default,reduce-overhead   the modes P-2025-C8 measures
# The notebooks run on the node's own Python through a kernel of its own: the bundle's ipykernel installs
# the kernelspec `lablib-node` (LABLIB_KERNEL) into the check's temporary folder, first on JUPYTER_PATH,
# with JUPYTER_DATA_DIR, JUPYTER_RUNTIME_DIR and IPYTHONDIR under $GPU_CHECK_OUT/jupyter/.
#
# Variables: GPU_CHECK_BUDGET=8m (the steps' total: 480, 480s, 8m, 1.5h), DEVICE=cuda|cpu (cpu: the dry
# run the test suite does), PYTHON=python3, BUNDLE=.bundle, GPU_CHECK_OUT=gpu-check, GPU_CHECK_ONLY=C2,C4
# (the report's sections), GPU_CHECK_SKIP=x-fast,compile (steps left out; `report` leaves every section
# out), GPU_CHECK_PLAN_ONLY=1 (the preflight and the plan, nothing run, no bundle needed), BENCH_ARGS
# (more bench options), LABLIB_KERNEL=lablib-node, and fixed limits in seconds that replace the planned
# ones: LIMIT_PYTEST, LIMIT_BENCH, LIMIT_FAST, LIMIT_REPORT (each report section), LIMIT_COMPILE.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BUNDLE=${BUNDLE:-.bundle}
OUT=${GPU_CHECK_OUT:-gpu-check}
ONLY=${GPU_CHECK_ONLY:-C2,C3,C4,C5,C7,C10,E2}
SKIP=${GPU_CHECK_SKIP:-}
BENCH_ARGS=${BENCH_ARGS:-}
KERNEL=${LABLIB_KERNEL:-lablib-node}
BUDGETPY=("$PYTHON" "$REPO/tools/gpu_budget.py")
STARTED=$(date +%s)
case "$BUNDLE" in /*) ;; *) BUNDLE="$REPO/$BUNDLE" ;; esac
SUBSET="$BUNDLE/cifar10-subset.zip"

case "$DEVICE" in cuda|cpu) ;; *) echo "gpu-check: DEVICE=$DEVICE is not cuda or cpu" >&2; exit 2 ;; esac
BUDGET=$("${BUDGETPY[@]}" seconds -- "${GPU_CHECK_BUDGET:-8m}") || exit 2
[[ $KERNEL =~ ^[A-Za-z0-9._-]+$ ]] || { echo "gpu-check: LABLIB_KERNEL=$KERNEL is not a kernel name (letters, digits, . _ -)" >&2; exit 2; }
if [ -z "${GPU_CHECK_PLAN_ONLY:-}" ] && { ! compgen -G "$BUNDLE/wheels/*.whl" >/dev/null || [ ! -f "$SUBSET" ]; }; then
  echo "gpu-check: no bundle at $BUNDLE (wheels/ and cifar10-subset.zip); run \`make bundle DATA=PATH\` where there is internet, then copy it here" >&2
  exit 2
fi

rm -rf "$OUT"
mkdir -p "$OUT/logs" "$OUT/jupyter" "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
SITE=$(mktemp -d "${TMPDIR:-/tmp}/lablib-site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
# Jupyter finds the check's kernel first and writes only inside the check's folders.
export JUPYTER_PATH="$SITE/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}" JUPYTER_DATA_DIR="$OUT/jupyter/data" \
  JUPYTER_RUNTIME_DIR="$OUT/jupyter/runtime" IPYTHONDIR="$OUT/jupyter/ipython" LABLIB_KERNEL="$KERNEL"
# The run store under the output folder; the decode cache in the temporary folder (it is large and rebuilt fast).
export PYTHONUNBUFFERED=1 LABLIB_RUNS_DIR="$OUT/runs" LABLIB_DATA_DIR="$SITE/data" LABLIB_TEST_CIFAR="$SUBSET"
SUMMARY="$OUT/summary.md"
elapsed() { echo $(($(date +%s) - STARTED)); }

# 0. The preflight, then the plan (which stops here, one line, when nvidia-smi lists a GPU torch cannot use).
"$PYTHON" -m lablib info --preflight --json "$OUT/preflight.json" >"$OUT/logs/preflight.log" 2>&1 || {
  echo "gpu-check: the preflight failed (\`$PYTHON -m lablib info --preflight\`); see $OUT/logs/preflight.log" >&2
  tail -n 5 "$OUT/logs/preflight.log" >&2
  exit 1
}
cat "$OUT/logs/preflight.log"
PLAN_ARGS=(--budget "$BUDGET" --device "$DEVICE" --preflight "$OUT/preflight.json" --sections "$ONLY" --skip "$SKIP")
"${BUDGETPY[@]}" plan --elapsed "$(elapsed)" "${PLAN_ARGS[@]}" >"$OUT/plan.txt" || exit 2
cat "$OUT/plan.txt"
[ -n "${GPU_CHECK_PLAN_ONLY:-}" ] && exit 0

{
  echo "# GPU check"
  echo
  echo "- started: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), device $DEVICE, budget $BUDGET s (GPU_CHECK_BUDGET=${GPU_CHECK_BUDGET:-8m})"
} >"$SUMMARY"

# The bundle's wheels into a temporary target, and its ipykernel's kernelspec for the node's own Python:
# the node's Python stays as it is.
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
      --target "$SITE" "$BUNDLE"/wheels/*.whl >"$OUT/logs/install.log" 2>&1; then
  echo "gpu-check: installing the bundle's wheels failed; see $OUT/logs/install.log" >&2
  echo "- install: FAILED (logs/install.log)" >>"$SUMMARY"
  exit 1
fi
if ! "$PYTHON" -m ipykernel install --name "$KERNEL" --display-name "Python 3 (lablib GPU check)" \
      --prefix "$SITE" >"$OUT/logs/kernel.log" 2>&1; then
  echo "gpu-check: installing the kernel $KERNEL failed; see $OUT/logs/kernel.log" >&2
  echo "- kernel: FAILED (logs/kernel.log)" >>"$SUMMARY"
  exit 1
fi
"$PYTHON" -m lablib info >"$OUT/logs/info.log" 2>&1
{
  echo "- python: $("$PYTHON" -c 'import sys, torch; print(sys.executable, sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1)"
  echo "- device: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible")' 2>&1)"
  echo "- kernel: $KERNEL ($SITE/share/jupyter/kernels/$KERNEL)"
  echo
  echo "## Preflight"
  echo
  sed -n 's/^  \(.*\)$/- \1/p' "$OUT/logs/preflight.log"
  echo
  echo "## Steps"
  echo
  echo "| step | status | seconds | estimate s | limit s | log |"
  echo "| --- | --- | ---: | ---: | ---: | --- |"
} >>"$SUMMARY"

failures=0
LEFT_OUT=()
step() {  # step NAME COMMAND...: planned with the time left, run with its limit and switches, a row in the summary
  local name=$1 started status code decision extra=()
  shift
  decision=$("${BUDGETPY[@]}" step "$name" --elapsed "$(elapsed)" "${PLAN_ARGS[@]}") || {
    failures=$((failures + 1)); echo "| $name | FAILED (planning) | 0 | | | |" >>"$SUMMARY"; return
  }
  eval "$decision"
  if [ "$STEP_RUN" != 1 ]; then
    echo "| $name | skipped: $STEP_NOTE | 0 | $STEP_ESTIMATE | | |" >>"$SUMMARY"
    echo "[$(date +%H:%M:%S)] $name skipped: $STEP_NOTE"
    return
  fi
  [ -n "$STEP_NOTE" ] && LEFT_OUT+=("$name: $STEP_NOTE")
  [[ $name == pytest-cuda && " $STEP_ENV " == *" LABLIB_NO_COMPILE=1 "* ]] && extra=(-k "not compiled")
  started=$(date +%s)
  echo "[$(date +%H:%M:%S)] $name (about $STEP_ESTIMATE s, limit $STEP_LIMIT s)${STEP_NOTE:+ $STEP_NOTE}"
  # shellcheck disable=SC2086  # STEP_ENV is a list of NAME=VALUE switches without spaces
  env $STEP_ENV timeout --kill-after=15 "$STEP_LIMIT" "$@" "${extra[@]}" >"$OUT/logs/$name.log" 2>&1
  code=$?
  case $code in
    0) status=passed ;;
    124|137) status="TIMED OUT after $STEP_LIMIT s"; failures=$((failures + 1)) ;;
    *) status="FAILED (exit $code)"; failures=$((failures + 1)) ;;
  esac
  echo "| $name | $status | $(($(date +%s) - started)) | $STEP_ESTIMATE | $STEP_LIMIT | logs/$name.log |" >>"$SUMMARY"
  echo "    $status; last lines:"
  tail -n 3 "$OUT/logs/$name.log" | sed 's/^/      /'
}

REPORT=("$PYTHON" -m lablib report --profile gpu --lab all --data "$SUBSET" --device "$DEVICE" --no-stitch --only)
step pytest-cuda "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider -o addopts="" tests
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
step bench "$PYTHON" -m lablib.bench --data "$SUBSET" --device "$DEVICE" --out "$OUT/bench" \
  --only instrumentation,loading,notebook $BENCH_ARGS
IFS=, read -ra SECTIONS <<<"$ONLY"
for section in "${SECTIONS[@]}"; do
  [ -n "$section" ] && step "report-$section" "${REPORT[@]}" "$section"
done
step x-fast "${REPORT[@]}" X-FAST  # after C3: its faithful mode is C3's best point, measured by then
step compile "${REPORT[@]}" P-2025-C8

# The records, without model files (they are large and the report does not read them back).
tar -czf "$OUT/records.tar.gz" -C "$OUT" --exclude='*.pt' --exclude='*.pth' --exclude='*.ts' \
  --exclude='*.so' --exclude='*.pt2' runs 2>"$OUT/logs/tar.log" || failures=$((failures + 1))
{
  echo
  [ ${#LEFT_OUT[@]} -gt 0 ] && printf -- '- left out: %s\n' "${LEFT_OUT[@]}"
  echo "- records: records.tar.gz ($(du -h "$OUT/records.tar.gz" 2>/dev/null | cut -f1)); stitch them with"
  echo "  \`make report PROFILE=gpu RECORDS=$(basename "$OUT")/records.tar.gz\` where TeX is installed"
  echo "- took $(elapsed) s of a $BUDGET s budget; $failures step(s) did not pass"
} >>"$SUMMARY"
"$PYTHON" -m lablib.report.records summary "$OUT/runs" >>"$SUMMARY" 2>"$OUT/logs/summary.log" || true
cat "$SUMMARY"
[ "$failures" -eq 0 ]
