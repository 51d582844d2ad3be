"""What the machine must have before the lab runs: compilers, headers, the CUDA toolkit, writable folders, disk.

Each check returns a `Check`: ok or missing, what it found, which features a missing item turns off
and how to fix it. Nothing here prints: `python -m lablib info` shows the lines, and `make gpu-check`
(`python -m lablib info --preflight --json FILE`) turns the features off before a step can fail deep
inside Triton or Inductor. The lookups are the ones torch and Triton make themselves: Triton builds
its kernel launcher with $CC, else gcc, else clang, against Python.h; Inductor's C++ code (CPU
kernels, AOTInductor) is built with $CXX, else g++; AOTInductor on a GPU also needs the CUDA toolkit.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from lablib.core.paths import data_root, runs_root

# What a missing item turns off, in the words the check's lines use.
FEATURES = {
    "compile": "torch.compile, Triton and Inductor (every compiled run and timing)",
    "aoti": "AOTInductor",
    "notebooks": "notebook execution",
    "records": "recording runs",
    "cuda": "the GPU",
}
FREE_BYTES = 1 << 30  # 1 GiB: the decoded image subset (60 MiB for 20,000 images), records and compile caches

Which = Callable[[str], str | None]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    found: str  # what was found, or what is missing
    turns_off: tuple[str, ...] = ()  # FEATURES keys lost while it is missing
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok       {self.name}: {self.found}"
        off = "; ".join(FEATURES[feature] for feature in self.turns_off)
        return (
            f"missing  {self.name}: {self.found}"
            + (f"; turns off {off}" if off else "")
            + (f"; fix: {self.fix}" if self.fix else "")
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "turns_off": list(self.turns_off)}


def c_compiler(env: Mapping[str, str] = os.environ, which: Which | None = None) -> Check:
    """Triton's kernel launcher: $CC, else gcc, else clang."""
    which = which or shutil.which
    name = "C compiler"
    given = env.get("CC")
    if given:
        path = which(given)
        if path:
            return Check(name, True, f"$CC {path}")
        return Check(name, False, f"CC={given!r} is not on PATH", ("compile",), "install it, or unset CC")
    for candidate in ("gcc", "clang"):
        path = which(candidate)
        if path:
            return Check(name, True, path)
    return Check(
        name,
        False,
        "no gcc or clang on PATH (Triton builds its kernel launcher with one)",
        ("compile",),
        "install gcc (apt-get install gcc; on a cluster, module load gcc) or set CC to a C compiler",
    )


def cxx_compiler(env: Mapping[str, str] = os.environ, which: Which | None = None) -> Check:
    """Inductor's C++ code (CPU kernels, AOTInductor): $CXX, else g++."""
    which = which or shutil.which
    name = "C++ compiler"
    candidate = env.get("CXX") or "g++"
    path = which(candidate)
    if path:
        return Check(name, True, path if candidate == "g++" else f"$CXX {path}")
    return Check(
        name,
        False,
        f"{'CXX=' + repr(candidate) if env.get('CXX') else 'g++'} not on PATH (Inductor compiles C++ with it)",
        ("compile", "aoti"),
        "install g++ (apt-get install g++; on a cluster, module load gcc) or set CXX to a C++ compiler",
    )


def python_headers(include_dir: str | None = None) -> Check:
    """Python.h in sysconfig's include folder: Triton's launcher and Inductor's C++ include it."""
    folder = Path(include_dir or sysconfig.get_paths()["include"])
    if (folder / "Python.h").is_file():
        return Check("Python headers", True, str(folder / "Python.h"))
    version = sysconfig.get_python_version()
    return Check(
        "Python headers",
        False,
        f"no Python.h in {folder}",
        ("compile",),
        f"install this Python's development headers (apt-get install python{version}-dev, or the cluster's "
        "python module with headers)",
    )


def cuda_toolkit(
    cuda_available: bool,
    env: Mapping[str, str] = os.environ,
    which: Which | None = None,
    usual: str = "/usr/local/cuda",
) -> Check:
    """The CUDA toolkit AOTInductor compiles against on a GPU: $CUDA_HOME, $CUDA_PATH, nvcc's, else `usual`."""
    which = which or shutil.which
    name = "CUDA toolkit"
    if not cuda_available:
        return Check(name, True, "not needed (no GPU in use)")
    nvcc = which("nvcc")
    candidates = [env.get("CUDA_HOME"), env.get("CUDA_PATH"), str(Path(nvcc).resolve().parents[1]) if nvcc else None]
    for home in [*filter(None, candidates), usual]:
        if (Path(home) / "bin" / "nvcc").is_file():
            return Check(name, True, f"{home} (nvcc)")
    return Check(
        name,
        False,
        f"no nvcc in $CUDA_HOME, $CUDA_PATH, on PATH or in {usual}",
        ("aoti",),
        "load the CUDA toolkit (module load cuda) or set CUDA_HOME to the folder with bin/nvcc",
    )


def _writable(folder: Path) -> str | None:
    """None when a file can be created and removed in `folder`, else why not."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return error.strerror or str(error)
    return None


def writable_home(env: Mapping[str, str] = os.environ) -> Check:
    """$HOME: IPython's profile (unless $IPYTHONDIR) and Triton's cache (unless $TRITON_CACHE_DIR) live there."""
    home = env.get("HOME")
    problem = "HOME is not set" if not home else _writable(Path(home)) if Path(home).is_dir() else "no such folder"
    if problem is None:
        return Check("HOME", True, f"{home} is writable")
    moved = {"compile": "TRITON_CACHE_DIR", "notebooks": "IPYTHONDIR"}  # a cache that lives in HOME unless moved
    off = tuple(feature for feature, variable in moved.items() if not env.get(variable))
    return Check(
        "HOME",
        not off,
        f"{home or 'HOME'}: {problem}" + ("" if off else " (the caches that live there are moved elsewhere)"),
        off,
        "export HOME to a writable folder (or TRITON_CACHE_DIR and IPYTHONDIR)",
    )


def jupyter_runtime_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where Jupyter writes kernel connection files: $JUPYTER_RUNTIME_DIR, else jupyter_core's default."""
    if env.get("JUPYTER_RUNTIME_DIR"):
        return Path(env["JUPYTER_RUNTIME_DIR"])
    data = env.get("JUPYTER_DATA_DIR") or os.path.join(
        env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME", "~"), ".local", "share"), "jupyter"
    )
    return Path(data).expanduser() / "runtime"


def jupyter_runtime(env: Mapping[str, str] = os.environ) -> Check:
    """The runtime folder papermill's kernel writes its connection file to (created when missing)."""
    folder = jupyter_runtime_dir(env)
    existing = next(p for p in [folder, *folder.parents] if p.exists())  # what a mkdir -p would write into
    problem = _writable(existing) if existing.is_dir() else f"{existing} is not a folder"
    if problem is None:
        return Check("Jupyter runtime folder", True, f"{folder} is writable")
    return Check(
        "Jupyter runtime folder",
        False,
        f"{folder}: {problem}",
        ("notebooks",),
        "export JUPYTER_RUNTIME_DIR to a writable folder",
    )


def free_disk(folders: Mapping[str, Path] | None = None, need: int = FREE_BYTES) -> list[Check]:
    """Free space where the run store and the data cache live (each folder, or its nearest existing parent)."""
    folders = folders or {"run store": runs_root(), "data cache": data_root()}
    checks = []
    for what, folder in folders.items():
        existing = next(p for p in [Path(folder), *Path(folder).parents] if p.exists())
        free = shutil.disk_usage(existing).free
        name = f"disk ({what})"
        if free >= need:
            checks.append(Check(name, True, f"{free / 2**30:.1f} GiB free at {folder}"))
        else:
            checks.append(
                Check(
                    name,
                    False,
                    f"{free / 2**20:.0f} MiB free at {folder}, less than {need / 2**30:.1f} GiB",
                    ("records",),
                    "free space there, or set LABLIB_RUNS_DIR / LABLIB_DATA_DIR to a folder on another disk",
                )
            )
    return checks


def gpu_usable(warning: str | None) -> Check:
    """provenance.driver_warning()'s line as a check: a GPU that nvidia-smi lists and torch cannot use."""
    if warning is None:
        return Check("GPU", True, "usable by torch, or none listed by nvidia-smi")
    return Check("GPU", False, warning, ("cuda",))


def run_checks(cuda_available: bool, warning: str | None = None, env: Mapping[str, str] = os.environ) -> list[Check]:
    """Every check, in the order the lines are shown."""
    return [
        gpu_usable(warning),
        c_compiler(env),
        cxx_compiler(env),
        python_headers(),
        cuda_toolkit(cuda_available, env),
        writable_home(env),
        jupyter_runtime(env),
        *free_disk(),
    ]


def turned_off(checks: list[Check]) -> dict[str, str]:
    """feature -> why it is off (the first missing check that turns it off)."""
    off: dict[str, str] = {}
    for check in checks:
        for feature in check.turns_off:
            if not check.ok:
                off.setdefault(feature, f"{check.name}: {check.found}")
    return off
