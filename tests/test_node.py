"""A GPU node without internet: the bundle (wheels + CIFAR-10 subset) and its records coming back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from lablib.core.config import make_config
from lablib.core.errors import LabError
from lablib.core.runs import load_runs, start_run
from lablib.report.records import summary_markdown, unpack

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import bundle  # noqa: E402  (tools/bundle.py)


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


@pytest.mark.notebook  # downloads the wheels, runs the check's steps on the CPU and stitches: minutes
def test_the_gpu_check_dry_run_on_the_cpu_and_its_records_stitched_here(cifar_zip, tmp_path):
    python = f"{sys.version_info.major}.{sys.version_info.minor}"  # this machine's CPython stands in for the node's
    bundle_dir = tmp_path / "bundle"
    made = _make_bundle(cifar_zip, bundle_dir, "--python", python, "--test", "60")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "gpu-check"
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "PYTHON": sys.executable,
        "BUNDLE": str(bundle_dir),
        "GPU_CHECK_OUT": str(out),
        "GPU_CHECK_ONLY": "C2,C3,C4",
        "LIMIT_REPORT": "600",  # the CPU stands in for the GPU: its epochs take seconds, not the node's fractions
        "GPU_CHECK_SKIP": "x-fast,compile",
        "BENCH_ARGS": "--repeats 1 --steps 1 --notebook-repeats 1 --loader-images 256 --loader-repeats 1 --workers 0",
    }
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    summary = (out / "summary.md").read_text() if (out / "summary.md").exists() else done.stdout
    assert done.returncode == 0, summary + done.stderr[-3000:]
    for step in ("pytest-cuda", "bench", "report"):
        assert f"| {step} | passed |" in summary
    assert "| x-fast | skipped" in summary and "derived from images/s" in summary
    with tarfile.open(out / "records.tar.gz") as archive:
        names = archive.getnames()
    assert any(n.endswith("c2_timing") or "/c2_timing/" in n for n in names)
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pt2", ".so"))]

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
    assert "0 point(s) ran" in stitched.stdout
    html = (report / "report.html").read_text()
    assert "Time measurement" in html and "GPU vs CPU" in html
