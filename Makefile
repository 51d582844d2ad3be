# The lab's one-command entry points. Every target creates the environment it
# needs: `make test` and `make report` work on a fresh machine.
#
#   make setup                  the virtual environment (.venv), pinned, kernel registered
#   make test                   everything: lint, unit, real-image, notebook and report tests (CPU;
#                               CUDA tests run when a GPU is present)
#   make test-fast              lint and the unit tests only (a few minutes)
#   make lint                   ruff check + ruff format --check (`make format` rewrites)
#   make lab                    JupyterLab with the project's kernel
#   make system-deps            pandoc + xelatex (+ poppler, chromium for the tests)
#
# Variables:
#   PYTHON=python3.11           the interpreter the environment is built from
#   TORCH_INDEX=URL             install torch/torchvision from this wheel index. Unset, the index is chosen
#                               for this machine's NVIDIA driver (nvidia-smi's CUDA version; python -m
#                               lablib.core.wheels): CUDA 13 drivers and machines without one get PyPI's CUDA
#                               13.0 wheel, CUDA 12.8-12.9 drivers .../whl/cu128, CUDA 12.0-12.7 .../whl/cu126;
#                               an older driver stops setup with what to do
#   PRINT_PIP=1                 `make setup PRINT_PIP=1`: print the pip commands setup would run (the index
#                               chosen for this driver included), install nothing
#   PIP_FLAGS=--isolated        pip ignores local pip.conf / find-links (so the CUDA build from
#                               PyPI is chosen, not a CPU-only file); set PIP_FLAGS= to use your config

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_INDEX ?=
PIP_FLAGS ?= --isolated
PIP := $(PY) -m pip install $(PIP_FLAGS) --disable-pip-version-check --progress-bar off
STAMP := $(VENV)/.lablib-ready
ENV_CONFIG := $(VENV)/.lablib-config
PDF_PACKAGES := pandoc texlive-xetex texlive-fonts-recommended texlive-plain-generic poppler-utils
TEST_PACKAGES := $(PDF_PACKAGES) chromium

.PHONY: setup test test-fast lint format lab system-deps test-deps test-slurm FORCE

# The torch wheel index: TORCH_INDEX when given, else the one this machine's NVIDIA driver runs (empty: PyPI's).
# Standard library only, so the system Python runs it before the environment exists; exit status 2 stops setup.
CHOOSE_INDEX = $(PYTHON) -m lablib.core.wheels index --given "$(TORCH_INDEX)"
TORCH_PINS = $$(grep -E '^torch(vision)?==' requirements.txt | tr '\n' ' ')

ifeq ($(PRINT_PIP),1)
setup:
	@index=$$($(CHOOSE_INDEX)) || exit 2; \
	echo "# $$($(PYTHON) -m lablib.core.wheels explain --given "$(TORCH_INDEX)")"; \
	if [ -n "$$index" ]; then echo "$(PIP) --index-url $$index $(TORCH_PINS)"; fi; \
	echo "$(PIP) -r requirements.txt"
else
setup: $(STAMP)
endif

# The environment is rebuilt when the pins, the package metadata or the torch index change (TORCH_INDEX, or
# the driver's choice).
$(ENV_CONFIG): FORCE
	@mkdir -p $(VENV)
	@index=$$($(CHOOSE_INDEX)) || exit 2; \
	echo "TORCH_INDEX=$$index PYTHON=$(PYTHON)" | cmp -s - $@ || echo "TORCH_INDEX=$$index PYTHON=$(PYTHON)" > $@

$(STAMP): requirements.txt pyproject.toml $(ENV_CONFIG)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	@index=$$(sed -n 's/^TORCH_INDEX=\([^ ]*\) .*/\1/p' $(ENV_CONFIG)); \
	if [ -n "$$index" ]; then echo "torch from $$index"; $(PIP) --index-url "$$index" $(TORCH_PINS) || exit 1; fi
	$(PIP) -r requirements.txt
	$(PIP) --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --display-name "Python 3 (lablib)" >/dev/null
	@# torchvision's compiled ops must load against the installed torch (a CPU-only torch file breaks them)
	$(PY) -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5); print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'OK')"
	@touch $@

# PDF export needs pandoc and xelatex; the checks need poppler. Installed when
# missing and we are root with apt-get; otherwise the exact command is printed.
system-deps:
	@$(call need_packages,pandoc xelatex pdftotext pdftoppm,$(PDF_PACKAGES))

test-deps:
	@$(call need_packages,pandoc xelatex pdftotext pdftoppm chromium,$(TEST_PACKAGES))

define need_packages
missing=""; for tool in $(1); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "installing$$missing (Debian packages: $(2))"; \
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2) >/dev/null || { echo "apt-get install failed; run: sudo apt-get install $(2)"; exit 1; }; \
  else \
    echo "missing:$$missing. Install them with:"; echo "  sudo apt-get install $(2)"; \
    echo "(tests and report steps that need them are skipped with this reason)"; \
  fi; \
fi
endef

test: setup test-deps lint
	$(PY) -m pytest

# Unit tests: no notebook execution, no report build, no torch.compile (see tests/conftest.py).
test-fast: setup lint
	$(PY) -m pytest -m "not notebook and not report and not slow and not slurm"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# A real single-node Slurm cluster (munged, slurmctld, slurmd started by the tests
# themselves in a temporary folder), for EXECUTOR=slurm. Skipped, with the reason
# shown, where slurm-wlm and munge cannot be installed.
SLURM_PACKAGES := slurm-wlm munge
test-slurm: setup
	@PATH="$$PATH:/usr/sbin:/sbin"; $(call need_packages,slurmctld slurmd munged sbatch,$(SLURM_PACKAGES))
	$(PY) -m pytest -m slurm

# JupyterLab refuses to start as root without --allow-root (cloud VMs, containers): given only then.
LAB_ARGS ?=
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

FORCE:

# ---------------------------------------------------------------------------
# make report: measure what is missing (each measurement once), present what changed, then stitch
# report/report.html and report/report.pdf
#
#   make report                                  the full profile (the lab's settings; needs a GPU)
#   make report PROFILE=quick                    a small subset of CIFAR-10 (torchvision's download), minutes
#   make report PROFILE=quick DATA=../shared/data/cifar10-jpg.zip   the same from an image archive (offline)
# Variables:
#   PROFILE=full|quick|gpu the plan's profile (report/plan.yaml). Without a GPU the full profile stops
#                        before training unless PROFILE=full is given explicitly. A GPU that nvidia-smi
#                        lists but torch cannot use stops every profile at once, with the fix in one line
#                        (make setup TORCH_INDEX=...), unless DEVICE=cpu.
#   DATA=PATH|cifar10    the data for every section (default: the profile's, torchvision's CIFAR-10)
#   MNIST=PATH           MNIST digits as a folder/.zip for E1 (default: mnist-png.zip beside DATA, else
#                        torchvision's download)
#   DEVICE=auto|cuda|cpu the device for every section (C4 still measures both)
#   ONLY=C4,C5           build only these sections, in the lab variant's numbering (LAB=2025 ONLY=C4 is the
#                        profiling section) or by notebook name; the sections they need are built too (C3 for
#                        C4's best worker count); the report still shows the others' last results
#   FORCE=1              measure and present the selected sections again, even when up to date
#   JOBS=N               measurements at once; timings still run alone (notebooks present side by side)
#   EXECUTOR=local|slurm slurm: missing measurements go out as Slurm job arrays (submitit) on a shared file
#                        system; resources: SLURM_PARTITION, SLURM_GPUS, SLURM_CPUS, SLURM_MEM_GB,
#                        SLURM_TIME_MIN, SLURM_EXTRA="--account=lab --qos=short"
#   PLAN=report/plan.yaml
#   OUTPUT=report/       the folder for report.html, report.pdf and build/
#   LAB=2026|2025|2024|eml|all  the lab variant (default 2026): its sections, numbering and questions
#                        (report/variants.yaml); only its sections run; all: every section of the plan
#   RECORDS=gpu-check/records.tar.gz  stitch what make gpu-check measured on a GPU node (PROFILE=gpu); runs nothing
#   DRY_RUN=1            print every measurement the build would run or reuse, by section, the plan's cost and its
#                        estimated time here and on an L4, A100 and H100; runs and trains nothing
#   BUDGET=45m           the time E1's grids may take together: successive halving fits each grid to its share;
#                        unset: the profile's (the full profile's 20m), BUDGET=none: the whole grids
#   AUTHOR="Zoë O'Brien" STUDENT_ID=zo2026 COURSE=HPML TERM="Spring 2026"
#                        the student's title page (or fill in report/student.yaml once), printed as typed;
#                        TERM counts only on the command line (the environment's TERM is the terminal's)
PROFILE ?= full
DATA ?=
MNIST ?=
DEVICE ?=
ONLY ?=
FORCE ?=
JOBS ?= 1
EXECUTOR ?= local
export SLURM_PARTITION SLURM_GPUS SLURM_CPUS SLURM_MEM_GB SLURM_TIME_MIN SLURM_EXTRA
PLAN ?= report/plan.yaml
OUTPUT ?=
LAB ?=
RECORDS ?=
DRY_RUN ?=
BUDGET ?=
AUTHOR ?=
STUDENT_ID ?=
COURSE ?=
# PROFILE is passed on only when the user set it (command line or environment), so the runner can
# tell `make report` (implicit full: stops without a GPU) from `make report PROFILE=full` (insists).
# Every value is quoted, so paths with spaces or non-ASCII characters reach the runner whole; the runner
# checks each one (counts >= 1, names from their lists) and names the bad value in one line.
REPORT_ARGS := $(if $(filter command line environment environment override,$(origin PROFILE)),--profile "$(PROFILE)") \
	$(if $(DATA),--data "$(DATA)") $(if $(MNIST),--mnist "$(MNIST)") $(if $(DEVICE),--device "$(DEVICE)") \
	$(if $(ONLY),--only "$(ONLY)") $(if $(filter 1 yes true,$(FORCE)),--force) --jobs "$(JOBS)" \
	--executor "$(EXECUTOR)" --plan "$(PLAN)" $(if $(LAB),--lab "$(LAB)") $(if $(OUTPUT),--output "$(OUTPUT)") \
	$(if $(RECORDS),--records "$(RECORDS)") $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) \
	$(if $(BUDGET),--budget "$(BUDGET)") $(if $(AUTHOR),--author "$(AUTHOR)") \
	$(if $(STUDENT_ID),--student-id "$(STUDENT_ID)") $(if $(COURSE),--course "$(COURSE)") \
	$(if $(filter command line,$(origin TERM)),--term "$(TERM)")

.PHONY: report
report: setup $(if $(filter 1 yes true,$(DRY_RUN)),,system-deps)
	$(PY) -m lablib report $(REPORT_ARGS)

# --- inference sections C7-C10, XC-2026 and Q1-Q6 ----------------------------------
.PHONY: test-inference nbval-q
test-inference: setup
	$(PY) -m pytest -q tests/core/test_torchscript.py tests/core/test_latency.py tests/core/test_libtorch.py \
		tests/sections/test_torchscript.py tests/sections/test_latency.py tests/sections/test_libtorch.py \
		tests/sections/test_questions.py tests/sections/test_notebooks_inference.py

# The Q notebooks' remove-cell asserts, run with their defaults; records go to a scratch store.
nbval-q: setup
	LABLIB_RUNS_DIR=$$(mktemp -d) $(PY) -m pytest --nbval-lax notebooks/q*.ipynb

# --- benchmarks -------------------------------------------------------------------
#   make bench DATA=PATH        the pipeline's own benchmarks: instrumentation cost, data loading,
#                               notebook overhead, report rebuild (about 5 min on 2 CPU cores); prints
#                               name=value lines last, records runs/bench/..., writes bench/<cpu|gpu>-<name>.*
#                               DATA is the CIFAR-10 image folder/.zip (e.g. ../shared/data/cifar10-jpg.zip);
#                               without it torchvision's CIFAR-10 is used, downloaded when possible, and
#                               the bench stops with an error naming DATA= when it cannot be had
#   make bench BENCH_ARGS="--device cpu --repeats 7"   more options: python -m lablib.bench --help
# Not part of `make test`: timings are checked here, on a quiet machine, not in CI.
BENCH_ARGS ?=

.PHONY: bench
bench: setup
	$(PY) -m lablib.bench $(if $(DATA),--data "$(DATA)") $(BENCH_ARGS)

# --- a GPU node without internet ---------------------------------------------------------
#   make bundle DATA=PATH        .bundle/: the wheels such a node lacks (papermill, nbclient, nbformat,
#                                ipykernel, jupyter_client, ...) for its CPython and a class-balanced subset
#                                of the CIFAR-10 image archive; prints the size (bundle + tracked < 60 MiB)
#   make gpu-check               on the node, from the repository root: a preflight (compilers, Python.h, CUDA
#                                toolkit, writable folders, disk, the driver), then within GPU_CHECK_BUDGET and
#                                in order of value pytest -m cuda, bench, X-FAST, the report's timing sections
#                                (profile gpu) and the compile modes into gpu-check/, records.tar.gz last; a step
#                                its estimate (tools/gpu_check_costs.json) does not fit is skipped and listed
# Variables: NODE_PYTHON=3.12, BUNDLE_TRAIN=20000, BUNDLE_TEST=2000, GPU_CHECK_OUT=gpu-check, DEVICE=cuda|cpu,
#   GPU_CHECK_BUDGET=8m (480, 480s, 8m), GPU_CHECK_PLAN_ONLY=1 (the preflight and the plan, nothing run);
#   more in tools/gpu_check.sh's header (GPU_CHECK_ONLY, GPU_CHECK_SKIP, LIMIT_*)
NODE_PYTHON ?= 3.12
BUNDLE_TRAIN ?= 20000
BUNDLE_TEST ?= 2000
GPU_CHECK_OUT ?= gpu-check
GPU_CHECK_BUDGET ?= 8m

.PHONY: bundle gpu-check
bundle: setup
	$(PY) tools/bundle.py $(if $(DATA),--data "$(DATA)") --python $(NODE_PYTHON) --train $(BUNDLE_TRAIN) --test $(BUNDLE_TEST)

# No `setup` here: the node has its own Python (torch, numpy, ...) and no internet; the bundle brings the rest.
gpu-check:
	GPU_CHECK_OUT="$(GPU_CHECK_OUT)" GPU_CHECK_BUDGET="$(GPU_CHECK_BUDGET)" DEVICE="$(or $(DEVICE),cuda)" \
	  bash tools/gpu_check.sh
