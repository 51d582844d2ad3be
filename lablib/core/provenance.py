"""Where and with what a run happened: git, library versions, GPU, driver, CPU.

Everything here is read on demand (never at import) and every probe fails soft:
a missing git or nvidia-smi gives None, not an error.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from lablib.core.paths import REPO_ROOT
from lablib.core.wheels import Driver, choose, pinned_torch, read_driver, version_tuple


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
def nvidia() -> Driver:
    """The NVIDIA driver and the GPUs nvidia-smi lists (an empty Driver without nvidia-smi)."""
    return read_driver()


def nvidia_driver() -> dict:
    """Driver version and the newest CUDA it supports, from nvidia-smi (None without one)."""
    found = nvidia()
    return {"driver_version": found.version, "driver_cuda": found.cuda}


def driver_warning() -> str | None:
    """One line when nvidia-smi lists a GPU that torch cannot use: the cause and the fix; None otherwise.

    The fix names the wheel index of the pinned torch that this driver runs (lablib.core.wheels), so
    `make setup TORCH_INDEX=...` can be pasted as it is."""
    found = nvidia()
    if not found.gpus or torch.cuda.is_available():
        return None
    try:
        pinned = pinned_torch()
    except (OSError, ValueError):
        pinned = torch.__version__
    choice = choose(found, pinned)
    built = torch.version.cuda
    gpus = found.gpus[0] + (f" and {len(found.gpus) - 1} more GPU(s)" if len(found.gpus) > 1 else "")
    rebuild = choice.stop or (
        f"rebuild the environment with the build this driver runs: make setup TORCH_INDEX={choice.url}"
    )
    if built is None:
        cause, fix = f"this torch {torch.__version__} is a CPU-only build", rebuild
    elif found.cuda and version_tuple(built) > version_tuple(found.cuda):
        cause = (
            f"this torch {torch.__version__} is built for CUDA {built} and the NVIDIA driver "
            f"({found.version}) runs CUDA up to {found.cuda}"
        )
        fix = f"update the driver, or {rebuild}" if not choice.stop else rebuild
    else:
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        cause = f"torch {torch.__version__} (CUDA {built}) sees no usable GPU" + (
            f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else ""
        )
        fix = "check CUDA_VISIBLE_DEVICES and what `nvidia-smi` says of the GPU"
    return f"nvidia-smi lists {gpus}, but {cause}, so the GPU will not be used; {fix}"


@lru_cache(maxsize=1)
def environment_lock() -> str:
    """A short hash of every installed distribution and its version (the 'locked environment').

    Copies a package vendors are not installed: importing setuptools (torch.compile's C++ builds do) puts
    setuptools/_vendor on sys.path, whose copies would otherwise change the lock, and every measurement key
    with it, in the middle of a process."""
    paths = [entry for entry in sys.path if "_vendor" not in Path(entry).parts]
    found = metadata.distributions(path=paths)
    names = sorted(f"{d.metadata['Name']}=={d.version}".lower() for d in found if d.metadata["Name"])
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
