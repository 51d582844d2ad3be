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

The model is C7's, found as C8-C10 find it (same tag and data; `obtain_scripted`),
and both sides' per-call times go through lablib.sections.inference.latency_summary.
The section's sentences (`build_sentence` ... `latency_sentence`) live at the end
with the ratios that judge the comparison.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT
from lablib.core.timing import Stopwatch
from lablib.sections.inference import (
    SCRIPTED_FILE,
    SINGLE_IMAGE,
    SOURCE_SECTION,
    LatencySummary,
    find_source_run,
    load_scripted,
    save_scripted,
    script_model,
    shape_text,
)

CPP_DIR = REPO_ROOT / "cpp"
DEFAULT_BUILD_DIR = CPP_DIR / "build"  # git-ignored
EXECUTABLE = "lablib_infer"
BUILD_MODES = ("auto", "cuda", "cpu-only")
INSTALL_HINT = "sudo apt-get install cmake g++ (or conda install cmake cxx-compiler)"
# Python's median over C++'s: above FASTER_RATIO the C++ call is faster, below SLOWER_RATIO Python is,
# in between the two are the same within the machine's noise.
FASTER_RATIO = 1.1
SLOWER_RATIO = 0.9
NOISY_RELATIVE_STD = 0.5  # a standard deviation above half the median: the machine was busy while timing


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
    if mode not in BUILD_MODES:
        raise ToolchainError(f"mode={mode!r} is not a build mode; expected one of {', '.join(BUILD_MODES)}.")
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
    seconds: list[float]  # each timed single-image forward, in s (the program prints ms)
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
            seconds=[float(v) / 1000.0 for v in data["times_ms"]],
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


@dataclass
class ScriptedSource:
    """The TorchScript model both programs run, and where it came from."""

    module: torch.jit.ScriptModule  # on the CPU, eval mode
    path: Path  # the file the C++ program loads
    c7_run: str | None  # "c7_torchscript/<run id>" when it is C7's model, None when scripted here
    warnings: list[str]  # what torch.jit.script/save/load said

    @property
    def from_c7(self) -> bool:
        return self.c7_run is not None


def obtain_scripted(tag: str, fingerprint: str, folder: Path | str, fresh: nn.Module) -> ScriptedSource:
    """C7's scripted model (the one C8-C10 use: lablib.sections.inference.find_source_run, same tag and data),
    or the `fresh` model scripted and saved into `folder` when no C7 run matches."""
    found = find_source_run(tag, fingerprint)
    if found is not None:
        loaded = load_scripted(found / SCRIPTED_FILE, "cpu")
        return ScriptedSource(loaded.module, found / SCRIPTED_FILE, f"{SOURCE_SECTION}/{found.name}", loaded.warnings)
    scripted = script_model(fresh)
    path = Path(folder) / SCRIPTED_FILE
    saved = save_scripted(scripted.module, path)
    return ScriptedSource(
        scripted.module, path, None, scripted.warnings + [w for w in saved if w not in scripted.warnings]
    )


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


@dataclass(frozen=True)
class Comparison:
    max_abs_diff: float  # largest |python - c++| over all logits
    allclose: bool  # within atol + rtol * |python|
    same_classes: bool  # the argmax of every row agrees
    matching_classes: int  # rows whose argmax agrees
    rows: int
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
        matching_classes=int((expected.argmax(1) == actual.argmax(1)).sum()),
        rows=int(expected.shape[0]),
        atol=atol,
        rtol=rtol,
    )


def version_of(text: str) -> str:
    """'cmake version 3.25.1' -> '3.25.1' (the first dotted number), or the text."""
    match = re.search(r"\d+\.\d+(\.\d+)?", text)
    return match.group(0) if match else text


# --- the sentences of XC-2026 --------------------------------------------------------------


def build_sentence(build: BuildResult | None, problem: str | None) -> str:
    """How the program was built, or why it could not be (then the C++ side is not measured)."""
    if build is None:
        return (
            "**The C++ program could not be built, so the C++ side of this section is not measured.**"
            f"\n\n```\n{problem}\n```"
        )
    how = (
        "(`find_package(Torch)` with the CUDA toolkit)."
        if build.mode == "cuda"
        else "(libtorch_cpu + libc10, no CUDA), so it runs on the CPU only."
    )
    text = f"**Build:** the program was built with the **{build.mode}** configuration {how}"
    if build.fallback_reason:
        text += f" The CUDA-enabled configure was tried first and failed:\n\n```\n{build.fallback_reason}\n```"
    return text


def model_sentence(
    source: ScriptedSource, tag: str, inputs: torch.Tensor, input_file: str, device: str, threads: int
) -> str:
    """Which model and which input both programs use, and what torch.jit said about it."""
    if source.from_c7:
        origin = f"the scripted model saved by C7 in run `{source.c7_run}` (tag {tag!r}, the same data)"
    else:
        origin = (
            f"a freshly initialised ResNet-18 scripted here: no complete C7 run with tag {tag!r} and this data "
            "saved one (the prediction check and the latency do not depend on trained weights)"
        )
    text = (
        f"**Model:** {origin}. **Input:** {len(inputs)} test images spread evenly over the test set, a "
        f"{shape_text(inputs.shape)} float tensor saved to `{input_file}` in the run folder; both programs run on "
        f"`{device}` with {threads} CPU thread(s)."
    )
    if source.warnings:
        text += f"\n\n`torch.jit` warned: *{'; '.join(source.warnings)}*."
    if any(line.startswith("DeprecationWarning") for line in source.warnings):
        text += (
            " TorchScript is deprecated in this torch (new work should use `torch.export` and AOTInductor), but "
            "`torch.jit.load` in LibTorch still loads scripted models, which is what this section demonstrates."
        )
    return text


def prediction_sentence(comparison: Comparison | None, cpp: ProgramOutput | None) -> str:
    """XC-2026.1: do C++ and Python predict the same classes, and how close are their logits."""
    if comparison is None or cpp is None:
        return "**XC-2026.1:** not measured: the C++ program could not be built (see the build message above)."
    agreement = (
        f"the **same** class for all {comparison.rows} images"
        if comparison.same_classes
        else f"**different** classes: the same one for only {comparison.matching_classes} of {comparison.rows} images"
    )
    return (
        f"**XC-2026.1:** the C++ program (LibTorch {cpp.torch_version}) and Python predict {agreement}; the largest "
        f"absolute difference between their logits is {comparison.max_abs_diff:.3g} (`allclose` with atol "
        f"{comparison.atol:g}, rtol {comparison.rtol:g}: {comparison.allclose})."
    )


def latency_sentence(
    python: LatencySummary, cpp: LatencySummary | None, device: str, threads: int, warmup: int, gmacs: float
) -> str:
    """XC-2026.2: C++ against Python latency of the same TorchScript model, judged by the medians' ratio.

    `gmacs` is the model's GMACs per image (lablib.core.model.count_macs), quoted when the two are close.
    """
    if cpp is None:
        return (
            f"**XC-2026.2:** only the Python side was measured: {python.mean_ms:.3f} ms per image "
            f"(median {python.median_ms:.3f} ms over {python.runs} runs) for the TorchScript model on `{device}`."
        )
    ratio = python.median_ms / cpp.median_ms
    text = (
        f"**XC-2026.2:** on `{device}` with {threads} thread(s), after {warmup} warm-up runs, one "
        f"{shape_text(SINGLE_IMAGE)} image takes {cpp.mean_ms:.3f} ms on average in C++ (median "
        f"{cpp.median_ms:.3f} ms, sd {cpp.std_ms:.3f} ms over {cpp.runs} runs) against {python.mean_ms:.3f} ms "
        f"(median {python.median_ms:.3f} ms) for the same TorchScript model called from Python (median ratio "
        f"Python/C++ {ratio:.2f}). "
    )
    if ratio > FASTER_RATIO:
        text += (
            "The C++ call is faster: both execute the same graph on the same kernels, so the gap is what the Python "
            "call path adds per call (interpreter, argument conversion, the GIL), which matters for one small image "
            "and vanishes for large batches."
        )
    elif ratio >= SLOWER_RATIO:
        band = max(FASTER_RATIO - 1, 1 - SLOWER_RATIO)
        text += (
            f"The two are within {band:.0%} of each other: the kernels of a {gmacs:.2f}-GMAC forward pass dominate "
            "and the Python call path adds little on top of them."
        )
    else:
        text += (
            "Python is faster here, which the program cannot explain (same graph, same kernels); it is run-to-run "
            "variation of the machine."
        )
    if max(python.relative_std, cpp.relative_std) > NOISY_RELATIVE_STD:
        text += (
            f" The spread is large (standard deviation above {NOISY_RELATIVE_STD:.0%} of the median): the machine "
            "was busy, so the medians are the fairer comparison."
        )
    return text
