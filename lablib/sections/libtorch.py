"""XC-2026: build and run the C++ LibTorch program in cpp/, and compare it with Python.

The program (cpp/main.cpp) loads a TorchScript model with torch::jit::load,
predicts on an input tensor that Python saved with torch.save, and times
single-image forward passes (warm-up, then timed runs, synchronised on a GPU).
It prints one JSON object, parsed here into a `ProgramOutput`.

It is built against the LibTorch inside the installed torch
(CMAKE_PREFIX_PATH = torch.utils.cmake_prefix_path). The PyPI torch is a CUDA
build, so its find_package(Torch) also needs a CUDA toolkit (nvcc, cudart
headers, nvrtc). `build_program(mode="auto")` first tries that full configure,
pointing CMake at the toolkit and at the nvrtc that ships in the `nvidia-*`
wheels; if it fails (no or partial toolkit), it builds a CPU-only link against
libtorch_cpu/libc10 instead and records why. A missing compiler or CMake raises
`ToolchainError` with what to install: notebooks show its message, not a traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT
from lablib.core.timing import Stopwatch, time_calls

CPP_DIR = REPO_ROOT / "cpp"
DEFAULT_BUILD_DIR = CPP_DIR / "build"  # git-ignored
EXECUTABLE = "lablib_infer"
MODES = ("auto", "cuda", "cpu-only")
INSTALL_HINT = "sudo apt-get install cmake g++ (or conda install cmake cxx-compiler)"


class ToolchainError(LabError):
    """CMake or a C++ compiler is missing, or the program failed to configure/build/run."""


# --- the toolchain ------------------------------------------------------------------


@dataclass(frozen=True)
class Toolchain:
    cmake: str | None  # path of cmake, or None
    compiler: str | None  # path of the C++ compiler ($CXX, c++, g++ or clang++)
    nvcc: str | None  # path of nvcc, or None (only the full CUDA configure uses it)
    cmake_version: str = ""
    compiler_version: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def missing(self) -> list[str]:
        return [name for name, path in (("cmake", self.cmake), ("a C++ compiler", self.compiler)) if not path]


def _first_line(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else ""


def find_toolchain(path: str | None = None) -> Toolchain:
    """Look for cmake, a C++ compiler and nvcc on PATH (or on `path`)."""
    cmake = shutil.which("cmake", path=path)
    compiler = None
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        compiler = shutil.which(name, path=path)
        if compiler:
            break
    nvcc = shutil.which("nvcc", path=path)
    return Toolchain(
        cmake,
        compiler,
        nvcc,
        _first_line([cmake, "--version"]) if cmake else "",
        _first_line([compiler, "--version"]) if compiler else "",
    )


def require_toolchain(toolchain: Toolchain) -> None:
    """Raise ToolchainError naming what is missing and how to install it."""
    if toolchain.missing:
        raise ToolchainError(
            f"cannot build the LibTorch program: {' and '.join(toolchain.missing)} not found on PATH. "
            f"Install them ({INSTALL_HINT}) and run this section again; nothing else in the report needs them."
        )


# --- configure and build ---------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    executable: Path
    mode: str  # "cuda" (find_package(Torch) with the CUDA toolkit) or "cpu-only"
    configure_s: float
    build_s: float
    fallback_reason: str | None  # why the full CUDA configure was not used, when it was tried and failed
    log: str  # the tail of CMake's output

    def to_dict(self) -> dict:
        return {**asdict(self), "executable": str(self.executable)}


def _run(command: Sequence[str], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
    try:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as error:
        return 124, f"timed out after {timeout:.0f} s: {' '.join(map(str, command))}\n{error.output or ''}"
    except OSError as error:
        return 127, f"{command[0]}: {error}"
    return done.returncode, done.stdout + done.stderr


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def cuda_hints(nvcc: str | None = None) -> dict[str, str]:
    """CMake cache entries that let find_package(Torch) find a CUDA toolkit and nvrtc.

    The toolkit root comes from $CUDA_HOME/$CUDA_PATH, /usr/local/cuda, or nvcc's
    location; nvrtc, which a minimal toolkit may lack, from the nvidia-* wheel
    that the PyPI torch already depends on.
    """
    hints: dict[str, str] = {}
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    if nvcc:
        roots.append(str(Path(nvcc).resolve().parent.parent))
    for root in filter(None, roots):
        if (Path(root) / "include" / "cuda_runtime.h").exists():
            hints["CUDAToolkit_ROOT"] = hints["CUDA_TOOLKIT_ROOT_DIR"] = str(Path(root).resolve())
            break
    wheel_libs = sorted(Path(torch.__file__).resolve().parent.parent.glob("nvidia/cu*/lib/libnvrtc.so*"))
    toolkit_nvrtc = list(Path(hints.get("CUDAToolkit_ROOT", "/nonexistent")).glob("lib*/libnvrtc.so"))
    if not toolkit_nvrtc and wheel_libs:
        plain = [lib for lib in wheel_libs if ".alt." not in lib.name and "builtins" not in lib.name]
        if plain:
            hints["CUDA_nvrtc_LIBRARY"] = str(plain[0])
    return hints


def _configure_and_build(
    source: Path, build: Path, mode: str, toolchain: Toolchain, jobs: int, timeout: float
) -> tuple[int, str, float, float]:
    build.mkdir(parents=True, exist_ok=True)
    command = [
        toolchain.cmake,
        "-S",
        source,
        "-B",
        build,
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
        f"-DCMAKE_CXX_COMPILER={toolchain.compiler}",
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DLABLIB_CPU_ONLY={'ON' if mode == 'cpu-only' else 'OFF'}",
    ]
    if mode == "cuda":
        command += [f"-D{key}={value}" for key, value in cuda_hints(toolchain.nvcc).items()]
    with Stopwatch() as configure:
        code, log = _run(command, timeout)
    if code != 0:
        return code, log, configure.seconds, float("nan")
    with Stopwatch() as compile_:
        code, build_log = _run([toolchain.cmake, "--build", build, "--parallel", str(jobs)], timeout)
    return code, log + build_log, configure.seconds, compile_.seconds


def build_program(
    build_dir: str | os.PathLike | None = None,
    mode: str = "auto",
    source_dir: str | os.PathLike = CPP_DIR,
    jobs: int = 2,
    timeout: float = 900,
    toolchain: Toolchain | None = None,
) -> BuildResult:
    """Configure and build cpp/ into `build_dir`/<mode>/; return the executable and what it took.

    mode "auto" tries the full CUDA-enabled configure, then the CPU-only link.
    A second call on a built tree only re-checks it (CMake's own up-to-date check).
    """
    if mode not in MODES:
        raise ToolchainError(f"mode={mode!r} is not a build mode; expected one of {', '.join(MODES)}.")
    toolchain = toolchain or find_toolchain()
    require_toolchain(toolchain)
    source = Path(source_dir).resolve()
    root = Path(build_dir).resolve() if build_dir else DEFAULT_BUILD_DIR
    tries = ["cuda", "cpu-only"] if mode == "auto" else [mode]
    failures = []
    for attempt in tries:
        build = root / attempt
        code, log, configure_s, build_s = _configure_and_build(source, build, attempt, toolchain, jobs, timeout)
        executable = build / EXECUTABLE
        if code == 0 and executable.exists():
            reason = "\n".join(failures) or None
            return BuildResult(executable, attempt, configure_s, build_s, reason, _tail(log))
        stage = "configure" if math.isnan(build_s) else "build"  # no build time: configure failed
        failures.append(f"{attempt} {stage} failed (exit {code}):\n{_tail(log, 12)}")
    raise ToolchainError("could not build the LibTorch program in cpp/:\n" + "\n".join(failures))


def try_build(
    build_dir: str | os.PathLike | None = None, mode: str = "auto", toolchain: Toolchain | None = None
) -> tuple[BuildResult | None, str | None]:
    """build_program, with a ToolchainError turned into its message (for the notebook's text)."""
    try:
        return build_program(build_dir, mode, toolchain=toolchain), None
    except ToolchainError as error:
        return None, str(error)


# --- run and parse ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramOutput:
    logits: list[list[float]]  # B x classes, from the C++ forward pass
    predicted: list[int]  # argmax per row
    times_ms: list[float]  # each timed single-image forward, in ms
    device: str
    threads: int  # intra-op threads the program used
    torch_version: str  # LibTorch's version
    warmup: int

    def to_dict(self) -> dict:
        return asdict(self)


def parse_output(text: str) -> ProgramOutput:
    """The program's JSON object (its last line that starts with '{')."""
    lines = [line for line in text.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise ToolchainError(f"the LibTorch program printed no result; its output ends with:\n{_tail(text, 10)}")
    try:
        data = json.loads(lines[-1])
        return ProgramOutput(
            logits=[[float(v) for v in row] for row in data["logits"]],
            predicted=[int(v) for v in data["predicted"]],
            times_ms=[float(v) for v in data["times_ms"]],
            device=str(data["device"]),
            threads=int(data["threads"]),
            torch_version=str(data["torch_version"]),
            warmup=int(data["warmup"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ToolchainError(f"the LibTorch program's result is malformed ({error}): {lines[-1][:300]}") from None


def run_program(
    executable: str | os.PathLike,
    model_path: str | os.PathLike,
    input_path: str | os.PathLike,
    warmup: int = 50,
    runs: int = 200,
    device: str = "cpu",
    threads: int = 0,
    timeout: float = 600,
) -> ProgramOutput:
    """Run the built program on a saved model and input; raise ToolchainError on failure."""
    command = [executable, model_path, input_path, warmup, runs, device, threads]
    code, output = _run(command, timeout)
    if code != 0:
        raise ToolchainError(f"the LibTorch program failed (exit {code}):\n{_tail(output, 15)}")
    return parse_output(output)


# --- the Python side ------------------------------------------------------------------


def find_saved_model(tag: str = "", section: str = "c7_torchscript") -> tuple[Path, str] | None:
    """(model file, run id) of the latest complete `section` run with this tag that saved a
    scripted model (*.pt loadable by torch.jit.load), or None."""
    from lablib.core.runs import load_runs

    runs = load_runs(section, tag=tag)
    if runs.empty:
        return None
    for row in runs.sort_values("ended", ascending=False).to_dict("records"):
        files = sorted(Path(row["path"]).glob("*.pt"), key=lambda p: ("script" not in p.name, p.name))
        for path in files:
            try:
                torch.jit.load(str(path), map_location="cpu")
            except Exception:  # a state dict or another tensor file: not a TorchScript archive
                continue
            return path, row["run_id"]
    return None


def script_model(model: nn.Module) -> tuple[torch.jit.ScriptModule, list[str]]:
    """torch.jit.script(model), with the warnings it raised (TorchScript is deprecated in torch 2.13)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scripted = torch.jit.script(model)
    return scripted, sorted({f"{w.category.__name__}: {w.message}" for w in caught})


def sample_inputs(dataset, count: int) -> tuple[torch.Tensor, list[int]]:
    """`count` items spread evenly over a (test) dataset as a B x C x H x W tensor, and their labels.

    Evenly spaced, not the first `count`: a class-sorted dataset would otherwise give one class only.
    """
    count = min(count, len(dataset))
    if count < 1:
        raise LabError(f"count={count}: need at least one image to predict on.")
    indices = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
    items = [dataset[i] for i in indices]
    return torch.stack([image for image, _ in items]), [int(label) for _, label in items]


def save_input(tensor: torch.Tensor, path: str | os.PathLike) -> Path:
    """torch.save a contiguous CPU float copy; the C++ side reads it with torch::jit::pickle_load."""
    torch.save(tensor.detach().to("cpu", torch.float32).contiguous(), str(path))
    return Path(path)


@torch.no_grad()
def python_forward(model: nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits (float64 on the CPU) of `model` in eval mode, as the C++ program computes them."""
    model.eval()
    return model(inputs.to(device)).to("cpu", torch.float64)


@torch.no_grad()
def python_latency_ms(
    model: nn.Module, example: torch.Tensor, device: torch.device, warmup: int = 50, runs: int = 200
) -> list[float]:
    """Single-input forward latency in ms (lablib.core.timing.time_calls: warm-up, synchronised runs)."""
    model.eval()
    example = example.to(device)
    return [seconds * 1000.0 for seconds in time_calls(lambda: model(example), device, warmup, runs)]


@dataclass(frozen=True)
class Comparison:
    max_abs_diff: float  # largest |python - c++| over all logits
    allclose: bool  # within atol + rtol * |python|
    same_classes: bool  # the argmax of every row agrees
    atol: float
    rtol: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare_outputs(python_logits: Any, cpp_logits: Any, atol: float = 1e-4, rtol: float = 1e-4) -> Comparison:
    """Compare the two programs' logits (B x classes); shapes must match."""
    expected = torch.as_tensor(python_logits, dtype=torch.float64)
    actual = torch.as_tensor(cpp_logits, dtype=torch.float64)
    if expected.shape != actual.shape:
        raise LabError(
            f"Python logits have shape {tuple(expected.shape)} but C++ gave {tuple(actual.shape)}; "
            "they must come from the same input."
        )
    difference = (expected - actual).abs()
    return Comparison(
        max_abs_diff=float(difference.max()) if difference.numel() else 0.0,
        allclose=bool(torch.allclose(actual, expected, atol=atol, rtol=rtol)),
        same_classes=bool(torch.equal(expected.argmax(1), actual.argmax(1))),
        atol=atol,
        rtol=rtol,
    )


def latency_summary(times_ms: Sequence[float]) -> dict[str, float]:
    """mean, median, standard deviation, min and max of per-run times in ms."""
    values = list(times_ms)
    if not values:
        raise LabError("no timed runs to summarise; use runs >= 1.")
    return {
        "mean_ms": statistics.fmean(values),
        "median_ms": statistics.median(values),
        "std_ms": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min_ms": min(values),
        "max_ms": max(values),
        "runs": len(values),
    }


def version_of(text: str) -> str:
    """'cmake version 3.25.1' -> '3.25.1' (the first dotted number), or the text."""
    match = re.search(r"\d+\.\d+(\.\d+)?", text)
    return match.group(0) if match else text
