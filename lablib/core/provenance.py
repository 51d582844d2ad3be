"""Where and with what a run happened: git, library versions, GPU, driver, CPU.

Everything here is read on demand (never at import) and every probe fails soft:
a missing git or nvidia-smi gives None, not an error.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from lablib.core.paths import REPO_ROOT


def _command(*args: str, cwd: Path | None = None) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: Path = REPO_ROOT) -> dict:
    commit = _command("git", "rev-parse", "HEAD", cwd=root)
    status = _command("git", "status", "--porcelain", "--untracked-files=no", cwd=root)
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def nvidia_driver() -> dict:
    """Driver version and the newest CUDA it supports, from nvidia-smi (None without one)."""
    version = _command("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
    header = _command("nvidia-smi") or ""
    match = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {
        "driver_version": version.splitlines()[0].strip() if version else None,
        "driver_cuda": match.group(1) if match else None,
    }


def driver_warning() -> str | None:
    """A warning when this torch build needs a newer CUDA than the driver supports."""
    built, supported = torch.version.cuda, nvidia_driver()["driver_cuda"]
    if not built or not supported:
        return None
    as_tuple = lambda v: tuple(int(p) for p in v.split(".")[:2])  # noqa: E731
    if as_tuple(built) > as_tuple(supported):
        major = supported.split(".")[0]
        return (
            f"this torch {torch.__version__} is built for CUDA {built}, but the NVIDIA driver "
            f"({nvidia_driver()['driver_version']}) supports CUDA up to {supported}, so the GPU will not "
            f"be used. Update the driver, or rebuild the environment with a CUDA {major} wheel: "
            f"make setup TORCH_INDEX=https://download.pytorch.org/whl/cu{major}6"
        )
    return None


@lru_cache(maxsize=1)
def environment_lock() -> str:
    """A short hash of every installed distribution and its version (the 'locked environment')."""
    names = sorted(f"{d.metadata['Name']}=={d.version}".lower() for d in metadata.distributions() if d.metadata["Name"])
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def provenance(device: torch.device | None = None) -> dict:
    """Versions, hardware and git state for a run record."""
    cuda = torch.cuda.is_available()
    try:  # the installed distribution's version: importing torchvision only to read it costs seconds
        torchvision_version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        torchvision_version = None
    record = {
        **git_state(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": torch.__version__,
        "torchvision": torchvision_version,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        **(nvidia_driver() if cuda else {"driver_version": None, "driver_cuda": None}),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
        "platform": platform.platform(),
        "environment_lock": environment_lock(),
    }
    if device is not None:
        record["device"] = device.type
        record["device_name"] = device_name(device)
    return record
