#!/usr/bin/env bash
# `make gpu-check`: the lab's GPU figures on a node without internet, from the repository root.
#
#   make bundle DATA=PATH        (here, with internet: .bundle/ with the wheels and a CIFAR-10 subset)
#   copy the checkout with .bundle/ to the node, then there:
#   make gpu-check               (or: bash tools/gpu_check.sh)
#
# Each step has its own time limit and writes its log under $GPU_CHECK_OUT (default gpu-check/);
# the steps run in order of value, so a check cut off early still returns the first parts:
#   1. pytest -m cuda             every CUDA-marked test
#   2. bench                      make bench's figures on this device (instrumentation, loader, notebook overhead)
#   3. x-fast                     X-FAST: faithful vs fast mode, compile time, images/s, MFU
#   4. report (profile gpu)       C2, C3's sweep, C4's GPU point, C5, C7, C10, E2 on the subset (records only)
#   5. compile                    P-2025-C8: eager and the three torch.compile modes, 2 epochs
#   6. records.tar.gz + summary   the run records (model files left out) and a short summary
# Bring records.tar.gz back and stitch the report where TeX is:
#   make report PROFILE=gpu RECORDS=gpu-check/records.tar.gz
#
# Variables: DEVICE=cuda|cpu (cpu: the dry run the test suite does), PYTHON=python3, BUNDLE=.bundle,
# GPU_CHECK_OUT=gpu-check, GPU_CHECK_ONLY=C2,C4 (the report step's sections), GPU_CHECK_SKIP=x-fast,compile
# (steps left out), BENCH_ARGS (more bench options), and the step limits in seconds: LIMIT_PYTEST,
# LIMIT_BENCH, LIMIT_FAST, LIMIT_REPORT, LIMIT_COMPILE. The defaults fit 8 minutes on a 16-core H200 node.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BUNDLE=${BUNDLE:-.bundle}
OUT=${GPU_CHECK_OUT:-gpu-check}
ONLY=${GPU_CHECK_ONLY:-C2,C3,C4,C5,C7,C10,E2}
SKIP=",${GPU_CHECK_SKIP:-},"
BENCH_ARGS=${BENCH_ARGS:-}
LIMIT_PYTEST=${LIMIT_PYTEST:-60}
LIMIT_BENCH=${LIMIT_BENCH:-60}
LIMIT_FAST=${LIMIT_FAST:-75}
LIMIT_REPORT=${LIMIT_REPORT:-150}
LIMIT_COMPILE=${LIMIT_COMPILE:-110}
case "$BUNDLE" in /*) ;; *) BUNDLE="$REPO/$BUNDLE" ;; esac
SUBSET="$BUNDLE/cifar10-subset.zip"

case "$DEVICE" in cuda|cpu) ;; *) echo "gpu-check: DEVICE=$DEVICE is not cuda or cpu" >&2; exit 2 ;; esac
for limit in LIMIT_PYTEST LIMIT_BENCH LIMIT_FAST LIMIT_REPORT LIMIT_COMPILE; do
  [[ ${!limit} =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: $limit=${!limit} is not a whole number of seconds >= 1" >&2; exit 2; }
done
if ! compgen -G "$BUNDLE/wheels/*.whl" >/dev/null || [ ! -f "$SUBSET" ]; then
  echo "gpu-check: no bundle at $BUNDLE (wheels/ and cifar10-subset.zip); run \`make bundle DATA=PATH\` where there is internet, then copy it here" >&2
  exit 2
fi

rm -rf "$OUT"
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
SITE=$(mktemp -d "${TMPDIR:-/tmp}/lablib-site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
SUMMARY="$OUT/summary.md"
STARTED=$(date +%s)
{
  echo "# GPU check"
  echo
  echo "- started: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), device $DEVICE"
} >"$SUMMARY"

# 0. The bundle's wheels into a temporary target: the node's own Python stays as it is.
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
      --target "$SITE" "$BUNDLE"/wheels/*.whl >"$OUT/logs/install.log" 2>&1; then
  echo "gpu-check: installing the bundle's wheels failed; see $OUT/logs/install.log" >&2
  echo "- install: FAILED (logs/install.log)" >>"$SUMMARY"
  exit 1
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
# The run store under the output folder; the decode cache in the temporary folder (it is large and rebuilt fast).
export PYTHONUNBUFFERED=1 LABLIB_RUNS_DIR="$OUT/runs" LABLIB_DATA_DIR="$SITE/data" LABLIB_TEST_CIFAR="$SUBSET"
"$PYTHON" -m lablib info >"$OUT/logs/info.log" 2>&1
echo "- python: $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1)" >>"$SUMMARY"
echo "- device: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible")' 2>&1)" >>"$SUMMARY"
echo >>"$SUMMARY"
echo "| step | status | seconds | log |" >>"$SUMMARY"
echo "| --- | --- | ---: | --- |" >>"$SUMMARY"

failures=0
step() {  # step NAME LIMIT COMMAND...: run with its time limit, log to logs/NAME.log, a row in the summary
  local name=$1 limit=$2 started status code
  shift 2
  if [[ $SKIP == *",$name,"* ]]; then
    echo "| $name | skipped (GPU_CHECK_SKIP) | 0 | |" >>"$SUMMARY"
    return
  fi
  started=$(date +%s)
  echo "[$(date +%H:%M:%S)] $name (limit ${limit} s)"
  timeout --kill-after=15 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  code=$?
  case $code in
    0) status=passed ;;
    124|137) status="TIMED OUT after ${limit} s"; failures=$((failures + 1)) ;;
    *) status="FAILED (exit $code)"; failures=$((failures + 1)) ;;
  esac
  echo "| $name | $status | $(($(date +%s) - started)) | logs/$name.log |" >>"$SUMMARY"
  echo "    $status; last lines:"
  tail -n 3 "$OUT/logs/$name.log" | sed 's/^/      /'
}

REPORT=("$PYTHON" -m lablib report --profile gpu --data "$SUBSET" --device "$DEVICE" --no-stitch --only)
step pytest-cuda "$LIMIT_PYTEST" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider -o addopts="" tests
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
step bench "$LIMIT_BENCH" "$PYTHON" -m lablib.bench --data "$SUBSET" --device "$DEVICE" --out "$OUT/bench" \
  --only instrumentation,loading,notebook $BENCH_ARGS
step x-fast "$LIMIT_FAST" "${REPORT[@]}" X-FAST
step report "$LIMIT_REPORT" "${REPORT[@]}" "$ONLY"
step compile "$LIMIT_COMPILE" "${REPORT[@]}" P-2025-C8

# 5. The records, without model files (they are large and the report does not read them back).
tar -czf "$OUT/records.tar.gz" -C "$OUT" --exclude='*.pt' --exclude='*.pth' --exclude='*.ts' \
  --exclude='*.so' --exclude='*.pt2' runs 2>"$OUT/logs/tar.log" || failures=$((failures + 1))
{
  echo
  echo "- records: records.tar.gz ($(du -h "$OUT/records.tar.gz" 2>/dev/null | cut -f1)); stitch them with"
  echo "  \`make report PROFILE=gpu RECORDS=$(basename "$OUT")/records.tar.gz\` where TeX is installed"
  echo "- took $(($(date +%s) - STARTED)) s; $failures step(s) did not pass"
} >>"$SUMMARY"
"$PYTHON" -m lablib.report.records summary "$OUT/runs" >>"$SUMMARY" 2>"$OUT/logs/summary.log" || true
cat "$SUMMARY"
[ "$failures" -eq 0 ]
