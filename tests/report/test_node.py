"""A GPU node without internet: the bundle (wheels + CIFAR-10 subset) and its records coming back."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO

from lablib.core.config import make_config
from lablib.core.errors import LabError
from lablib.core.runs import load_runs, start_run
from lablib.report.job import Job, command
from lablib.report.records import summary_markdown, unpack

sys.path.insert(0, str(REPO / "tools"))
import bundle  # noqa: E402  (tools/bundle.py)
import gpu_budget  # noqa: E402  (tools/gpu_budget.py)

# What a GPU node's own Python has (pip included: it installs the bundle), and what the bundle brings.
NODE_HAS = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "tqdm", "pyyaml", "pytest", "pip")
NODE_LACKS = ("papermill", "nbclient", "nbformat", "ipykernel", "jupyter_client")


def test_the_wheel_list_has_one_version_of_each_and_what_the_node_needs():
    pins = bundle.read_pins()
    for name in ("papermill", "nbclient", "nbformat", "ipykernel", "jupyter-client"):
        assert name in pins
    requirements = dict(
        line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line
    )
    for name in ("papermill", "nbformat", "ipykernel"):  # the node runs the same versions as this machine
        assert pins[name] == requirements[name]


def test_a_doubled_pin_is_an_error(tmp_path):
    listed = tmp_path / "wheels.txt"
    listed.write_text("papermill==2.7.0\npapermill==2.6.0\n")
    with pytest.raises(bundle.BundleError, match="pinned twice"):
        bundle.read_pins(listed)


def test_the_subset_is_class_balanced_and_copies_members(cifar_zip, tmp_path):
    info = bundle.write_subset(cifar_zip, tmp_path / "subset.zip", train=105, test=20)
    assert (info["train_images"], info["test_images"], info["classes"]) == (105, 20, 10)
    with zipfile.ZipFile(tmp_path / "subset.zip") as subset, zipfile.ZipFile(cifar_zip) as source:
        names = subset.namelist()
        per_class = {}
        for name in names:
            split, label, _ = name.split("/")
            per_class.setdefault((split, label), 0)
            per_class[(split, label)] += 1
        train_counts = [v for (split, _), v in per_class.items() if split == "train"]
        assert max(train_counts) - min(train_counts) == 1 and sum(train_counts) == 105
        first = names[0]
        assert subset.read(first) == source.read(first)  # byte for byte, not re-encoded


def _make_bundle(data: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """tools/bundle.py as `make bundle` runs it, with 200 / 50 images unless `options` say otherwise."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "bundle.py"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--train",
            "200",
            "--test",
            "50",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.notebook  # downloads ~15 MB of wheels from PyPI: not a unit test
def test_make_bundle_builds_and_checks_its_size(cifar_zip, tmp_path):
    out = tmp_path / "bundle"
    done = _make_bundle(cifar_zip, out)
    assert done.returncode == 0, done.stderr
    assert "MiB (limit 60 MiB)" in done.stdout
    wheels = sorted(p.name for p in (out / "wheels").glob("*.whl"))
    assert len(wheels) == len(bundle.read_pins())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["subset"]["train_images"] == 200 and manifest["wheels"] == wheels
    too_small = _make_bundle(cifar_zip, out, "--limit-mib", "1")
    assert too_small.returncode == 2 and "over 1 MiB" in too_small.stderr


def _node_store(root: Path) -> Path:
    """A run store as the node leaves it: a complete run with its point.json naming the node's paths."""
    with start_run("c2_timing", make_config(device="cpu"), tag="gpu") as run:
        run.log_results(epoch_s_mean=2.0, images_per_s_mean=10_000.0)
    folder = run.path
    (folder / "notebook.ipynb").write_text("{}")
    (folder / "model.pt").write_bytes(b"weights")
    (folder / "point.json").write_text(
        json.dumps(
            {
                "key": "k",
                "status": "complete",
                "executed": "/node/gpu-check/runs/x/notebook.ipynb",
                "log": "/node/gpu-check/runs/x/papermill.log",
            }
        )
    )
    return folder


def _tarball(store: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.add(store, arcname="runs")
    return path


def test_records_unpack_into_the_store_with_their_paths_rewritten(tmp_path, monkeypatch):
    node = tmp_path / "node-runs"
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(node))
    folder = _node_store(node)
    tarball = _tarball(node, tmp_path / "records.tar.gz")
    here = tmp_path / "here-runs"
    added = unpack(tarball, here)
    assert [p.name for p in added] == [folder.name]
    point = json.loads((added[0] / "point.json").read_text())
    assert point["executed"] == str(added[0] / "notebook.ipynb")
    assert load_runs(root=here).iloc[0]["epoch_s_mean"] == 2.0
    assert unpack(tarball, here) == []  # a second unpack adds nothing and changes nothing
    table = summary_markdown(here)
    assert "| c2_timing |" in table and "5.00" in table  # 50,000 images at 10,000 images/s, derived


def test_records_with_a_path_outside_the_store_are_refused(tmp_path):
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        data = b"x"
        member = tarfile.TarInfo("runs/../../escaped.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    with pytest.raises(LabError, match="outside the run store"):
        unpack(tarball, tmp_path / "store")
    assert not (tmp_path / "escaped.txt").exists()


def test_records_that_are_not_a_tarball_are_one_clear_error(tmp_path):
    bad = tmp_path / "records.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(LabError, match="not a readable tarball"):
        unpack(bad, tmp_path / "store")
    with pytest.raises(LabError, match="does not exist"):
        unpack(tmp_path / "missing.tar.gz", tmp_path / "store")


def node_distributions(names: tuple[str, ...] = NODE_HAS) -> dict[str, metadata.Distribution]:
    """The installed distributions `names` and their dependency closure (markers evaluated here, extras followed)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = [(name, ()) for name in names]
    while todo:
        name, extras = todo.pop()
        key = bundle.normalise(name)
        try:
            distribution = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue  # a dependency for another platform or Python, not installed here
        if key in found and not extras:
            continue
        found[key] = distribution
        for text in distribution.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in ("", *extras)):
                todo.append((requirement.name, tuple(requirement.extras)))
    return found


def node_interpreter(folder: Path) -> Path:
    """A Python with only what a GPU node has, built from this environment without downloading anything:
    a venv without pip whose site-packages links the node's distributions (their files' top-level entries)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    for distribution in node_distributions().values():
        here = Path(distribution.locate_file(""))
        for top in {file.parts[0] for file in distribution.files or [] if file.parts[0] not in ("..", "__pycache__")}:
            if not (site / top).exists() and (here / top).exists():
                (site / top).symlink_to(here / top)
    return python


def test_the_node_interpreter_has_torch_and_lacks_the_jupyter_stack(tmp_path):
    python = node_interpreter(tmp_path / "node-python")
    code = (
        "import importlib.util, sys, torch, torchvision, pandas, seaborn, yaml, pytest, tqdm, pip; "
        f"print(sorted(m for m in {NODE_LACKS!r} if importlib.util.find_spec(m)))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    papermill = subprocess.run([python, "-c", "import papermill"], capture_output=True, text=True, env=_clean_env())
    assert papermill.returncode != 0 and "No module named 'papermill'" in papermill.stderr


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would leak this machine's packages into another interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


def test_papermill_runs_the_kernel_the_environment_names(tmp_path, monkeypatch):
    job = Job("c2_timing", REPO / "notebooks" / "c2_timing.ipynb", {"epochs": 1}, "key", tmp_path, 60.0)
    monkeypatch.delenv("LABLIB_KERNEL", raising=False)
    line = command(job)
    assert line[line.index("-k") + 1] == "python3"
    monkeypatch.setenv("LABLIB_KERNEL", "lablib-node")
    line = command(job)
    assert line[line.index("-k") + 1] == "lablib-node" and line[1:3] == ["-m", "papermill"]
    assert json.loads((tmp_path / "parameters.json").read_text()) == {"epochs": 1}


# --- the budget: tools/gpu_budget.py and tools/gpu_check_costs.json ------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("480", 480), ("480s", 480), ("8m", 480), ("8min", 480), ("90s", 90), ("1m30s", 90), ("1.5h", 5400)],
)
def test_a_budget_is_seconds_or_minutes(text, seconds):
    assert gpu_budget.seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "eight", "8 minutes", "-5m", "0", "8m 3x"])
def test_a_bad_budget_is_one_line_naming_it(text):
    with pytest.raises(gpu_budget.BudgetError, match="GPU_CHECK_BUDGET="):
        gpu_budget.seconds(text)
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gpu_budget.py"), "seconds", "--", text], capture_output=True, text=True
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "GPU_CHECK_BUDGET" in done.stderr


def test_the_cost_file_says_what_is_measured_and_what_is_estimated():
    costs = gpu_budget.load_costs()
    entries = [(name, target, entry) for name, targets in costs["compile"].items() for target, entry in targets.items()]
    for spec_name, spec in costs["steps"].items():
        entries += [(spec_name, device, entry) for device, entry in spec["base"].items()]
        for part in spec.get("parts", []):
            entries += [(f"{spec_name}/{part['name']}", d, e) for d, e in part.get("seconds", {}).items()]
    for name, device, entry in entries:
        assert entry["status"] in ("measured", "estimate"), name
        assert entry["seconds"] >= 0 and entry["basis"], name
        if device == "cuda":
            assert entry["status"] == "estimate" and entry["basis"].startswith("not yet measured on a GPU"), name
        if entry["status"] == "measured":
            assert entry["seconds"] == max(entry["samples"]), name  # the larger sample: an upper figure
    assert {"date", "machine", "how"} <= set(costs["measured_on"]["cpu"])
    for device in gpu_budget.DEVICES:  # every default step has a cost on both devices
        assert len(gpu_budget.steps_for(costs, device)) == 4 + len(gpu_budget.SECTIONS.split(","))


def _steps(device="cuda", **options):
    return gpu_budget.steps_for(gpu_budget.load_costs(), device, **options)


MARGIN = {"factor": 1.5, "seconds": 20}


def test_steps_that_do_not_fit_are_skipped_with_their_estimate_and_what_is_left():
    steps = _steps()
    decisions = gpu_budget.plan(steps, 200.0, {}, MARGIN, {})
    ran = [d for d in decisions if d.run]
    assert [d.step for d in decisions] == [s.name for s in steps]
    assert sum(d.estimate for d in ran) <= 200 and ran[0].step == "pytest-cuda"
    skipped = [d for d in decisions if not d.run]
    assert skipped and all(d.reason.startswith("estimate ") and " s left" in d.reason for d in skipped)
    for d in ran:  # a hard limit: the estimate with its margin, never more than was left when it starts
        assert d.estimate <= d.limit <= d.estimate * 1.5 + 20


def test_optional_parts_run_only_when_the_budget_allows_and_their_switches_say_so():
    steps = {s.name: s for s in _steps()}
    c10, later = steps["report-C10"], [steps["report-E2"], steps["compile"]]
    roomy = gpu_budget.decide(c10, 10_000, later, {}, MARGIN)
    assert roomy.run and not roomy.left_out and "LABLIB_NO_AOTI" not in roomy.env
    aoti = next(p for p in c10.parts if p.name == "aoti")
    tight = gpu_budget.decide(c10, c10.base + aoti.seconds - 1, later, {}, MARGIN)
    assert tight.run and tight.env == {"LABLIB_NO_AOTI": "1"} and "does not fit" in tight.left_out["aoti"]
    assert tight.estimate == c10.base
    compile_step = steps["compile"]
    without_autotune = gpu_budget.decide(compile_step, gpu_budget._required(compile_step, {}) + 1, [], {}, MARGIN)
    assert without_autotune.env == {"LABLIB_COMPILE_MODES": "eager,default,reduce-overhead"}
    everything = gpu_budget.decide(compile_step, 10_000, [], {}, MARGIN)
    assert everything.env == {"LABLIB_COMPILE_MODES": "eager,default,reduce-overhead,max-autotune"}


def test_without_a_compiler_the_compiled_parts_are_off_with_the_preflight_s_reason():
    off = {"compile": "C compiler: no gcc or clang on PATH", "aoti": "C++ compiler: g++ not on PATH"}
    decisions = {d.step: d for d in gpu_budget.plan(_steps(), 100_000, off, MARGIN, {})}
    assert not decisions["compile"].run and decisions["compile"].reason.startswith("needs torch.compile; C compiler")
    assert decisions["x-fast"].run and decisions["x-fast"].env == {"LABLIB_NO_COMPILE": "1"}
    assert "no torch.compile: C compiler: no gcc" in decisions["x-fast"].left_out["compile"]
    assert decisions["report-C10"].env == {"LABLIB_NO_AOTI": "1"}
    assert decisions["report-E2"].env == {"LABLIB_NO_COMPILE": "1", "LABLIB_NO_CPU_COMPILE": "1"}
    assert decisions["pytest-cuda"].env == {"LABLIB_NO_COMPILE": "1"}


def test_a_fixed_limit_replaces_the_planned_one_and_a_bad_one_is_named():
    step = _steps()[0]
    assert gpu_budget.decide(step, 1000, [], {}, MARGIN, {"LIMIT_PYTEST": "600"}).limit == 600
    with pytest.raises(gpu_budget.BudgetError, match="LIMIT_PYTEST='ten'"):
        gpu_budget.decide(step, 1000, [], {}, MARGIN, {"LIMIT_PYTEST": "ten"})


def test_unknown_sections_and_steps_are_named():
    with pytest.raises(gpu_budget.BudgetError, match="GPU_CHECK_ONLY='C2,C99'.*no cost for C99"):
        _steps(sections="C2,C99")
    with pytest.raises(gpu_budget.BudgetError, match="GPU_CHECK_SKIP names x-slow"):
        _steps(skip="x-slow")
    skipped = {d.step: d for d in gpu_budget.plan(_steps(skip="report,x-fast"), 10_000, {}, MARGIN, {})}
    assert skipped["x-fast"].reason == "left out by GPU_CHECK_SKIP" and not skipped["report-C2"].run


def test_the_step_command_prints_assignments_the_script_evaluates(tmp_path):
    preflight = tmp_path / "preflight.json"
    preflight.write_text(json.dumps({"checks": [], "off": {"aoti": "CUDA toolkit: no nvcc"}}))
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gpu_budget.py"), "step", "report-C10", "--budget", "8m"]
        + ["--elapsed", "100", "--device", "cuda", "--preflight", str(preflight)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    shell = subprocess.run(
        ["bash", "-c", done.stdout + '\necho "$STEP_RUN|$STEP_ENV|$STEP_NOTE"'], capture_output=True, text=True
    )
    run, env, note = shell.stdout.strip().split("|")
    assert run == "1" and env == "LABLIB_NO_AOTI=1" and note == "without aoti (no AOTInductor: CUDA toolkit: no nvcc)"
    assert shlex.split(env) == ["LABLIB_NO_AOTI=1"]


def _path_without_compilers(folder: Path) -> str:
    """A PATH like this one, less every C and C++ compiler: its tools linked into one folder."""
    folder.mkdir()
    compilers = ("gcc", "cc", "clang", "g++", "c++", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++")
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            name = entry.name
            if name.startswith(compilers) or (folder / name).exists():
                continue
            (folder / name).symlink_to(entry.path)
    return str(folder)


def test_the_script_plans_the_compiled_steps_off_when_gcc_is_missing(tmp_path):
    env = _clean_env(
        PATH=_path_without_compilers(tmp_path / "bin"),
        DEVICE="cuda",
        PYTHON=sys.executable,
        GPU_CHECK_OUT=str(tmp_path / "gpu-check"),
        GPU_CHECK_PLAN_ONLY="1",
        GPU_CHECK_BUDGET="1h",
    )
    env.pop("CC", None)
    env.pop("CXX", None)
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "missing  C compiler: no gcc or clang on PATH" in out and "missing  C++ compiler" in out
    assert "skip  compile      needs torch.compile; C compiler: no gcc or clang on PATH" in out
    assert "without compile: no torch.compile: C compiler" in out and "without aoti: no torch.compile" in out
    assert not (tmp_path / "gpu-check" / "summary.md").exists()  # the plan only: nothing ran


def test_a_bad_budget_stops_the_script_before_anything(tmp_path):
    env = _clean_env(GPU_CHECK_BUDGET="soon", GPU_CHECK_OUT=str(tmp_path / "gpu-check"), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == (
        "gpu-check: GPU_CHECK_BUDGET='soon' is not a duration; give seconds (480 or 480s) or minutes (8m)."
    )
    assert not (tmp_path / "gpu-check").exists()


@pytest.mark.notebook  # downloads the wheels, runs the check's steps on the CPU and stitches: minutes
def test_the_gpu_check_dry_run_on_the_cpu_and_its_records_stitched_here(cifar_zip, tmp_path):
    python = f"{sys.version_info.major}.{sys.version_info.minor}"  # this machine's CPython stands in for the node's
    bundle_dir = tmp_path / "bundle"
    made = _make_bundle(cifar_zip, bundle_dir, "--python", python, "--test", "60")
    assert made.returncode == 0, made.stderr
    node = node_interpreter(tmp_path / "node-python")  # torch, pandas, pytest, ...: no papermill, no ipykernel
    out = tmp_path / "gpu-check"
    env = _clean_env(
        DEVICE="cpu",
        PYTHON=str(node),
        BUNDLE=str(bundle_dir),
        GPU_CHECK_OUT=str(out),
        GPU_CHECK_ONLY="C2,C3,C4",
        GPU_CHECK_BUDGET="20m",  # the plan fits these steps in about 6 min here: room for a busy CI machine
        LIMIT_REPORT="600",  # the CPU stands in for the GPU: a slow moment must not end a section
        GPU_CHECK_SKIP="x-fast,compile",
        BENCH_ARGS="--repeats 1 --steps 1 --notebook-repeats 1 --loader-images 256 --loader-repeats 1 --workers 0",
    )
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    summary = (out / "summary.md").read_text() if (out / "summary.md").exists() else done.stdout
    assert done.returncode == 0, summary + done.stderr[-3000:]
    for step in ("pytest-cuda", "bench", "report-C2", "report-C3", "report-C4"):
        assert f"| {step} | passed |" in summary
    assert "| x-fast | skipped: left out by GPU_CHECK_SKIP |" in summary and "derived from images/s" in summary
    assert f"- python: {node} " in summary and "- kernel: lablib-node (" in summary
    with tarfile.open(out / "records.tar.gz") as archive:
        names = archive.getnames()
    assert any(n.endswith("c2_timing") or "/c2_timing/" in n for n in names)
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pt2", ".so"))]
    # Every notebook ran in the check's own kernel, on the node's Python.
    executed = sorted((out / "runs").glob("c[234]_*/*/notebook.ipynb"))
    assert len(executed) >= 3
    for notebook in executed:
        assert "Executing notebook with kernel: lablib-node" in (notebook.parent / "papermill.log").read_text()
        run = json.loads((notebook.parent / "run.json").read_text())
        assert run["provenance"]["python_executable"] == str(node)

    # Here, where TeX is: the node's records stitched into the report, nothing trained again.
    store, report = tmp_path / "here-runs", tmp_path / "report"
    stitched = subprocess.run(
        [
            sys.executable,
            "-m",
            "lablib",
            "report",
            "--profile",
            "gpu",
            "--device",
            "cpu",
            "--only",
            "C2,C3,C4",
            "--records",
            str(out / "records.tar.gz"),
            "--output",
            str(report),
        ],
        env={**os.environ, "LABLIB_RUNS_DIR": str(store)},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert stitched.returncode == 0, stitched.stdout[-3000:] + stitched.stderr[-3000:]
    assert "0 measurement(s) ran" in stitched.stdout and "present " not in stitched.stdout  # nothing runs here
    html = (report / "report.html").read_text()
    assert "Time measurement" in html and "GPU vs CPU" in html
    shown = html[html.index('id="sec-c2-timing-C2"') : html.index('id="sec-c5-optimizers-C5"')]  # C2, C3 and C4
    assert "This section failed" not in shown and "Not built yet" not in shown
