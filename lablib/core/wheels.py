"""Which torch build this machine's NVIDIA driver can run, from nvidia-smi; standard library only.

`make setup` runs it with the system Python, before the environment exists:

    python -m lablib.core.wheels index [--given URL]     the wheel index for pip (an empty line: PyPI's)
    python -m lablib.core.wheels explain [--given URL]   one line: the driver and the build chosen

A torch version is published as several CUDA builds, each on its own index
(https://download.pytorch.org/whl/cu126, ...); PyPI's wheel is one of them (CUDA 13.0 for the
pinned torch 2.13, as `torch.version.cuda` of the PyPI install shows). A driver runs every build
of its own CUDA major version or older (CUDA minor-version compatibility: a CUDA 12.x build runs on
any CUDA 12 driver, r525 or newer), so the choice is PyPI's wheel when the driver's major version
reaches it, else the newest build of the driver's major version not newer than the driver, else the
oldest of that major version. A driver older than every build stops `make setup` with what to do.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI_INDEX = "https://pypi.org/simple"
CPU_INDEX = f"{PYTORCH_INDEX}/cpu"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


@dataclass(frozen=True)
class Builds:
    cuda: tuple[str, ...]  # the CUDA builds on download.pytorch.org/whl/cuXYZ, oldest first
    pypi: str  # the CUDA version of PyPI's wheel
    basis: str  # where the row comes from


# torch minor version -> its CUDA builds. Check the row when the pin in requirements.txt moves.
BUILDS = {
    "2.13": Builds(
        ("12.6", "12.8", "13.0"),
        "13.0",
        "PyPI's wheel is 2.13.0+cu130 (installed here); cu126 and cu128 are the CUDA 12 builds PyTorch has "
        "published beside cu130 for each release since 2.9 (pytorch.org, previous versions)",
    ),
}
DEFAULT_BUILDS = BUILDS["2.13"]  # a torch without a row (an older node torch): the same series


@dataclass(frozen=True)
class Driver:
    """What nvidia-smi says: the driver, the newest CUDA it runs, the GPUs it lists (all None/empty without it)."""

    version: str | None = None  # "535.183.01"
    cuda: str | None = None  # "12.2", from nvidia-smi's header
    gpus: tuple[str, ...] = ()  # the GPU names it lists


@dataclass(frozen=True)
class Choice:
    """The torch build for a driver: pip's --index-url (None: PyPI's wheel) and why, or why none runs."""

    index: str | None
    build: str | None  # the CUDA version of the chosen build
    reason: str  # one line
    stop: str | None = None  # set when no build of this torch runs on the driver: what to do

    @property
    def url(self) -> str:
        """The index to name in `make setup TORCH_INDEX=...` (PyPI's own for its wheel)."""
        return self.index or PYPI_INDEX


def _nvidia_smi(*args: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def read_driver(run: Callable[..., str | None] = _nvidia_smi) -> Driver:
    """The driver as nvidia-smi reports it; an empty Driver without nvidia-smi or when it fails."""
    listed = run("--query-gpu=driver_version,name", "--format=csv,noheader") or ""
    rows = [[part.strip() for part in line.split(",", 1)] for line in listed.splitlines() if line.strip()]
    header = run() or ""
    match = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return Driver(
        version=rows[0][0] if rows else None,
        cuda=match.group(1) if match else None,
        gpus=tuple(row[1] for row in rows if len(row) > 1),
    )


def version_tuple(text: str) -> tuple[int, int]:
    """(12, 6) from "12.6" or "12.6.85"; a ValueError names a text that is not a version."""
    parts = text.strip().split(".")
    if not all(p.isdigit() for p in parts[:2]) or not parts[0]:
        raise ValueError(f"{text!r} is not a version like 12.6")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def builds_for(torch_version: str) -> Builds:
    minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    return BUILDS.get(minor, DEFAULT_BUILDS)


def choose(driver: Driver, torch_version: str) -> Choice:
    """The build of `torch_version` that `driver` runs (see the module's docstring for the rule)."""
    builds = builds_for(torch_version)
    torch_minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    if driver.cuda is None:
        return Choice(None, builds.pypi, f"no NVIDIA driver found: PyPI's torch {torch_minor} (CUDA {builds.pypi})")
    have = version_tuple(driver.cuda)
    named = f"the NVIDIA driver {driver.version or ''} runs CUDA up to {driver.cuda}".replace("  ", " ")
    if have[0] >= version_tuple(builds.pypi)[0]:
        return Choice(None, builds.pypi, f"{named}: PyPI's torch {torch_minor} (CUDA {builds.pypi})")
    same_major = [b for b in builds.cuda if version_tuple(b)[0] == have[0]]
    if not same_major:
        offered = ", ".join(builds.cuda)
        return Choice(
            None,
            None,
            f"{named}, older than every CUDA build of torch {torch_minor} ({offered})",
            stop=(
                f"{named}, older than every CUDA build of torch {torch_minor} ({offered}); update the driver "
                f"(r525 or newer runs CUDA 12 builds), or install the CPU build: make setup TORCH_INDEX={CPU_INDEX}"
            ),
        )
    fitting = [b for b in same_major if version_tuple(b) <= have]
    build = fitting[-1] if fitting else same_major[0]  # minor-version compatibility within a major version
    index = f"{PYTORCH_INDEX}/cu{build.replace('.', '')}"
    return Choice(index, build, f"{named}: torch {torch_minor}'s CUDA {build} build ({index})")


def pinned_torch(requirements: Path = REQUIREMENTS) -> str:
    """The torch version pinned in requirements.txt."""
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"torch==([^\s#]+)", line.split("#", 1)[0].strip())
        if match:
            return match.group(1)
    raise ValueError(f"{requirements} pins no torch==VERSION")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lablib.core.wheels", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("index", "explain"))
    parser.add_argument("--given", default="", help="TORCH_INDEX as the user gave it (empty: choose)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    args = parser.parse_args(argv)
    given = args.given.strip()
    if given:
        if not re.match(r"^(https?|file)://\S+$", given):
            message = f"make setup: TORCH_INDEX={given!r} is not a URL; give a wheel index such as {CPU_INDEX}"
            print(message, file=sys.stderr)
            return 2
        print(given if args.what == "index" else f"TORCH_INDEX={given} given")
        return 0
    choice = choose(read_driver(), pinned_torch(args.requirements))
    if choice.stop:
        print(f"make setup: {choice.stop}", file=sys.stderr)
        return 2
    print((choice.index or "") if args.what == "index" else choice.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
