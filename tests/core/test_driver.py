"""The torch build for the NVIDIA driver (make setup), and one clear line when a GPU is present but unusable.

The driver is faked: a small `nvidia-smi` script on PATH that reports driver 535 (CUDA 12.2), or a
monkeypatched reading of it; this machine's torch is PyPI's CUDA 13.0 build, which that driver cannot run.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from lablib.core import provenance
from lablib.core.errors import DeviceError
from lablib.core.train import resolve_device
from lablib.core.wheels import CPU_INDEX, Driver, choose, pinned_torch, read_driver
from lablib.report.build import Options, check_gpu_usable

OLD_DRIVER = Driver("535.183.01", "12.2", ("NVIDIA A100-SXM4-40GB",))
CU126 = "https://download.pytorch.org/whl/cu126"


@pytest.mark.parametrize(
    "cuda, index",
    [
        (None, None),  # no driver: PyPI's wheel (CUDA 13.0, runs on the CPU too)
        ("13.0", None),
        ("13.1", None),
        ("12.9", "https://download.pytorch.org/whl/cu128"),
        ("12.8", "https://download.pytorch.org/whl/cu128"),
        ("12.7", CU126),
        ("12.6", CU126),
        ("12.2", CU126),  # CUDA minor-version compatibility: any CUDA 12 driver runs a 12.x build
    ],
)
def test_the_wheel_index_follows_the_drivers_cuda_version(cuda, index):
    choice = choose(Driver("999.1", cuda, ("GPU",) if cuda else ()), "2.13.0")
    assert choice.index == index and choice.stop is None


def test_a_driver_older_than_every_build_is_a_stop_with_what_to_do():
    choice = choose(Driver("470.256.02", "11.4", ("Tesla T4",)), "2.13.0")
    assert choice.index is None and choice.stop
    assert "11.4" in choice.stop and "update the driver" in choice.stop and CPU_INDEX in choice.stop


def test_nvidia_smi_output_is_read_and_its_absence_is_an_empty_driver():
    answers = {
        (
            "--query-gpu=driver_version,name",
            "--format=csv,noheader",
        ): "535.183.01, NVIDIA A100\n535.183.01, NVIDIA A100\n",
        (): "| NVIDIA-SMI 535.183.01   Driver Version: 535.183.01   CUDA Version: 12.2     |\n",
    }
    driver = read_driver(lambda *args: answers[args])
    assert driver == Driver("535.183.01", "12.2", ("NVIDIA A100", "NVIDIA A100"))
    assert read_driver(lambda *args: None) == Driver()
    assert pinned_torch(REPO / "requirements.txt").startswith("2.13")


@pytest.fixture
def old_driver_on_path(tmp_path) -> dict[str, str]:
    """An environment whose PATH starts with a fake nvidia-smi reporting driver 535 (CUDA 12.2) and one GPU."""
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *--query-gpu*) echo "535.183.01, NVIDIA A100-SXM4-40GB" ;;\n'
        '  *) echo "| NVIDIA-SMI 535.183.01   Driver Version: 535.183.01   CUDA Version: 12.2 |" ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_make_setup_print_pip_names_the_index_for_the_old_driver(old_driver_on_path, tmp_path):
    venv = tmp_path / "never-built"
    done = subprocess.run(
        ["make", "-s", "setup", "PRINT_PIP=1", f"VENV={venv}"],
        cwd=REPO,
        env=old_driver_on_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "535.183.01" in lines[0] and "12.2" in lines[0]  # the reason
    assert f"--index-url {CU126} torch==" in lines[1] and "torchvision==" in lines[1]
    assert lines[2].endswith("-r requirements.txt") and not venv.exists()  # nothing installed
    given = subprocess.run(
        ["make", "-s", "setup", "PRINT_PIP=1", f"VENV={venv}", f"TORCH_INDEX={CPU_INDEX}"],
        cwd=REPO,
        env=old_driver_on_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"--index-url {CPU_INDEX} torch==" in given.stdout  # TORCH_INDEX stays the override


def test_make_setup_stops_with_one_line_for_a_driver_too_old_and_a_bad_torch_index(tmp_path, old_driver_on_path):
    folder = Path(old_driver_on_path["PATH"].split(os.pathsep)[0])
    (folder / "nvidia-smi").write_text(
        '#!/bin/sh\ncase "$*" in *--query-gpu*) echo "470.256.02, Tesla T4" ;; '
        '*) echo "Driver Version: 470.256.02   CUDA Version: 11.4" ;; esac\n'
    )
    for extra, expected in ((), "11.4, older than every CUDA build"), (("TORCH_INDEX=cu126",), "is not a URL"):
        done = subprocess.run(
            ["make", "-s", "setup", "PRINT_PIP=1", f"VENV={tmp_path / 'venv'}", *extra],
            cwd=REPO,
            env=old_driver_on_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and expected in done.stderr and "pip install" not in done.stdout


@pytest.fixture
def gpu_listed_but_unusable(monkeypatch):
    """nvidia-smi lists a GPU (driver 535, CUDA 12.2) that torch cannot use."""
    monkeypatch.setattr(provenance, "nvidia", lambda: OLD_DRIVER)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")


def test_the_driver_warning_names_the_cause_and_the_index_to_rebuild_with(gpu_listed_but_unusable):
    warning = provenance.driver_warning()
    assert "A100" in warning and "CUDA 13.0" in warning and "up to 12.2" in warning
    assert warning.endswith(f"make setup TORCH_INDEX={CU126}") and "\n" not in warning


def test_no_warning_without_a_listed_gpu_or_with_a_usable_one(monkeypatch):
    monkeypatch.setattr(provenance, "nvidia", lambda: Driver())
    assert provenance.driver_warning() is None
    monkeypatch.setattr(provenance, "nvidia", lambda: OLD_DRIVER)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert provenance.driver_warning() is None


def test_a_cpu_only_torch_and_a_hidden_gpu_have_their_own_causes(gpu_listed_but_unusable, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in provenance.driver_warning()
    monkeypatch.setattr(torch.version, "cuda", "12.2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES=''" in provenance.driver_warning()


def test_device_auto_never_falls_back_to_the_cpu_silently(gpu_listed_but_unusable):
    for name in ("auto", "cuda"):
        with pytest.raises(DeviceError, match=f"device='{name}': nvidia-smi lists .*TORCH_INDEX={CU126}"):
            resolve_device(name)
    assert resolve_device("cpu").type == "cpu"


def test_the_report_stops_at_the_door_unless_the_cpu_is_asked_for(gpu_listed_but_unusable, tmp_path):
    with pytest.raises(DeviceError, match=f"TORCH_INDEX={CU126}.*DEVICE=cpu"):
        check_gpu_usable(Options())
    check_gpu_usable(Options(device="cpu"))  # knowingly on the CPU
    check_gpu_usable(Options(records=tmp_path / "records.tar.gz"))  # stitching runs nothing


def test_lablib_report_and_info_give_the_line_with_a_fake_old_driver(old_driver_on_path, tmp_path):
    env = {**old_driver_on_path, "LABLIB_RUNS_DIR": str(tmp_path / "runs")}
    report = subprocess.run(
        [sys.executable, "-m", "lablib", "report"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 2
    assert report.stderr.startswith("error: nvidia-smi lists NVIDIA A100-SXM4-40GB") and CU126 in report.stderr
    assert len(report.stderr.strip().splitlines()) == 1 and "plan" not in report.stdout  # before the plan
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("point.json"))
    info = subprocess.run(
        [sys.executable, "-m", "lablib", "info"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert info.returncode == 0
    assert "warning: nvidia-smi lists NVIDIA A100-SXM4-40GB" in info.stdout and f"TORCH_INDEX={CU126}" in info.stdout
