"""The "libtorch" measurement: the C++ program in cpp/ built against LibTorch, run on the scripted model.

    request = libtorch_request(torchscript_request(training), "cpu", images=8, warmup_runs=50, timed_runs=200)
    measured = obtain(request)                  # lablib.core.store
    measured.results["same_classes"], measured.table("latency")   # Python's and C++'s per-call times (ms)

The program (cpp/main.cpp) loads a TorchScript model with torch::jit::load, predicts on an input tensor
that Python saved with torch.save, and times single-image forward passes (warm-up, then timed runs,
synchronised on a GPU); it prints one JSON object, parsed into a `ProgramOutput`. Its model is the file
the torchscript measurement saved (named by its key, `source`), its input a class-balanced sample of
that measurement's test set (lablib.core.torchscript.sample_images). Python runs the same scripted
model on the same input: the predictions are compared, and both sides' per-call times are summarised
by lablib.core.timing.summarize.

The program is built against the LibTorch inside the installed torch (CMAKE_PREFIX_PATH =
torch.utils.cmake_prefix_path), in cpp/build/<mode>/ (git-ignored) unless `build_dir` says otherwise.
The PyPI torch is a CUDA build, so its find_package(Torch) also needs a CUDA toolkit (nvcc, cudart
headers, nvrtc). `build_program(mode="auto")` first tries that full configure, pointing CMake at the
toolkit and at the nvrtc that ships in the `nvidia-*` wheels; if it fails (no or partial toolkit), it
builds a CPU-only link against libtorch_cpu/libc10 and records why. A missing compiler or CMake is a
complete measurement whose results say what to install (`cpp_built` False, `build_problem`), not a
failure; the toolchain found is part of the request (`toolchain`), so installing it measures again.
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
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lablib.core.errors import ConfigError, LabError
from lablib.core.paths import REPO_ROOT
from lablib.core.store import Request, Work

CPP_DIR = REPO_ROOT / "cpp"
DEFAULT_BUILD_DIR = CPP_DIR / "build"  # git-ignored
EXECUTABLE = "lablib_infer"
BUILD_MODES = ("auto", "cuda", "cpu-only")
DEVICES = ("cpu", "cuda")
INSTALL_HINT = "sudo apt-get install cmake g++ (or conda install cmake cxx-compiler)"
INPUT_FILE = "input.pt"  # the saved input batch both programs predict on
LATENCY_TABLE = "latency"
PYTHON_PROGRAM = "Python, TorchScript (torch.jit.load)"
CPP_PROGRAM = "C++, LibTorch (torch::jit::load)"
ATOL = RTOL = 1e-4  # C++ and Python logits agree when within ATOL + RTOL * |python|
BUILD_S = 120.0  # the dry run's estimate of a cold CMake configure and build of cpp/ (an up-to-date one: seconds)
BUILD_TIMEOUT_S = 900.0


class ToolchainError(LabError):
    """CMake or a C++ compiler is missing, or the program failed to configure, build or run."""


# --- the toolchain ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Toolchain:
    cmake: str | None  # path of cmake, or None
    compiler: str | None  # path of the C++ compiler ($CXX, c++, g++ or clang++)
    nvcc: str | None  # path of nvcc, or None (only the full CUDA configure uses it)
    cmake_version: str = ""
    compiler_version: str = ""

    @property
    def missing(self) -> list[str]:
        return [name for name, path in (("cmake", self.cmake), ("a C++ compiler", self.compiler)) if not path]

    def describe(self) -> str:
        """What was found, in a few words (part of a request's key: installing a tool measures again)."""
        cmake = f"cmake {version_of(self.cmake_version)}" if self.cmake else "no cmake"
        compiler = self.compiler_version or "no C++ compiler"
        return f"{cmake}; {compiler}; {'nvcc' if self.nvcc else 'no nvcc'}"


def _first_line(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


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


@lru_cache(maxsize=1)
def toolchain_here() -> Toolchain:
    """This process's toolchain, looked up once (the planner asks for it on every round)."""
    return find_toolchain()


def require_toolchain(toolchain: Toolchain) -> None:
    """Raise ToolchainError naming what is missing and how to install it."""
    if toolchain.missing:
        raise ToolchainError(
            f"cannot build the LibTorch program: {' and '.join(toolchain.missing)} not found on PATH. "
            f"Install them ({INSTALL_HINT}) and run this section again; nothing else in the report needs them."
        )


def version_of(text: str) -> str:
    """'cmake version 3.25.1' -> '3.25.1' (the first dotted number), or the text."""
    match = re.search(r"\d+\.\d+(\.\d+)?", text)
    return match.group(0) if match else text


# --- configure and build -----------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    executable: Path
    mode: str  # "cuda" (find_package(Torch) with the CUDA toolkit) or "cpu-only"
    configure_s: float
    build_s: float
    fallback_reason: str | None  # why the full CUDA configure was not used, when it was tried and failed
    log: str  # the tail of CMake's output


def _run(command: Sequence[Any], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
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

    The toolkit root comes from $CUDA_HOME/$CUDA_PATH, /usr/local/cuda, or nvcc's location; nvrtc,
    which a minimal toolkit may lack, from the nvidia-* wheel that the PyPI torch already depends on.
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
    from lablib.core.timing import Stopwatch

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
    timeout: float = BUILD_TIMEOUT_S,
    toolchain: Toolchain | None = None,
) -> BuildResult:
    """Configure and build cpp/ into `build_dir`/<mode>/; return the executable and what it took.

    mode "auto" tries the full CUDA-enabled configure, then the CPU-only link. A second call on a built
    tree only re-checks it (CMake's own up-to-date check).
    """
    if mode not in BUILD_MODES:
        raise ToolchainError(f"build_mode={mode!r} is not a build mode; expected one of {', '.join(BUILD_MODES)}.")
    toolchain = toolchain or find_toolchain()
    require_toolchain(toolchain)
    source = Path(source_dir).resolve()
    root = Path(build_dir).expanduser().resolve() if build_dir else DEFAULT_BUILD_DIR
    tries = ["cuda", "cpu-only"] if mode == "auto" else [mode]
    failures = []
    for attempt in tries:
        build = root / attempt
        code, log, configure_s, build_s = _configure_and_build(source, build, attempt, toolchain, jobs, timeout)
        executable = build / EXECUTABLE
        if code == 0 and executable.exists():
            return BuildResult(executable, attempt, configure_s, build_s, "\n".join(failures) or None, _tail(log))
        stage = "configure" if math.isnan(build_s) else "build"  # no build time: the configure failed
        failures.append(f"{attempt} {stage} failed (exit {code}):\n{_tail(log, 12)}")
    raise ToolchainError("could not build the LibTorch program in cpp/:\n" + "\n".join(failures))


def try_build(
    build_dir: str | os.PathLike | None = None, mode: str = "auto", toolchain: Toolchain | None = None
) -> tuple[BuildResult | None, str | None]:
    """build_program, with a ToolchainError turned into its message (what the record says instead)."""
    try:
        return build_program(build_dir, mode, toolchain=toolchain), None
    except ToolchainError as error:
        return None, str(error)


# --- run and parse -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramOutput:
    logits: list[list[float]]  # B x classes, from the C++ forward pass
    predicted: list[int]  # argmax per row
    seconds: list[float]  # each timed single-image forward, in s (the program prints ms)
    device: str
    threads: int  # intra-op threads the program used
    torch_version: str  # LibTorch's version
    warmup: int


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
    code, output = _run([executable, model_path, input_path, warmup, runs, device, threads], timeout)
    if code != 0:
        raise ToolchainError(f"the LibTorch program failed (exit {code}):\n{_tail(output, 15)}")
    return parse_output(output)


# --- the Python side and the comparison ------------------------------------------------------


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


def compare_predictions(python_logits: Any, cpp_logits: Any, atol: float = ATOL, rtol: float = RTOL) -> Comparison:
    """Compare the two programs' logits (B x classes, the same input); shapes must match."""
    from lablib.core.torchscript import compare_logits

    expected = torch.as_tensor(python_logits, dtype=torch.float64)
    actual = torch.as_tensor(cpp_logits, dtype=torch.float64)
    compared = compare_logits(expected, actual)  # a LabError when the shapes differ
    return Comparison(
        max_abs_diff=compared.max_abs_difference,
        allclose=bool(torch.allclose(actual, expected, atol=atol, rtol=rtol)),
        same_classes=compared.disagreements == 0,
        matching_classes=compared.images - compared.disagreements,
        rows=compared.images,
        atol=atol,
        rtol=rtol,
    )


# --- the request ---------------------------------------------------------------------------------


def libtorch_request(
    torchscript: Request,
    device: str = "cpu",
    images: int = 8,
    warmup_runs: int = 50,
    timed_runs: int = 200,
    build_dir: str = "",
    build_mode: str = "auto",
) -> Request:
    """The C++ program run on `torchscript`'s saved model and `images` class-balanced test images, on `device`
    ("cuda" runs there only when the CUDA-enabled build succeeds; the record says where it ran)."""
    if torchscript.kind != "torchscript":
        raise ConfigError(f"libtorch_request takes a torchscript request; got a {torchscript.kind!r} request.")
    if device not in DEVICES:
        raise ConfigError(f"device={device!r} is not allowed here; expected one of {', '.join(DEVICES)}.")
    if build_mode not in BUILD_MODES:
        raise ConfigError(f"build_mode={build_mode!r} is not a build mode; expected one of {', '.join(BUILD_MODES)}.")
    for name, value, least in (("images", images, 1), ("warmup_runs", warmup_runs, 0), ("timed_runs", timed_runs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name}={value!r} is not allowed; expected an integer >= {least}.")
    settings = {
        "source": torchscript.key,
        "device": device,
        "images": int(images),
        "warmup_runs": int(warmup_runs),
        "timed_runs": int(timed_runs),
        "build_dir": str(Path(build_dir).expanduser().resolve()) if build_dir else "",
        "build_mode": build_mode,
        "toolchain": toolchain_here().describe(),
    }
    return Request("libtorch", settings, timing=True, label=f"the LibTorch program on {device}, {images} images")


# --- measuring ---------------------------------------------------------------------------------


def measure_libtorch(request: Request, record) -> None:
    """Build the program, run it and Python's TorchScript on the same input; compare and time both."""
    import pandas as pd

    from lablib.core.timing import summarize, time_calls
    from lablib.core.torchscript import SCRIPTED_FILE, evaluation_data, load_scripted, sample_images, source_measurement

    settings = request.settings
    scripted_measured = source_measurement("torchscript", str(settings["source"]), keep=(SCRIPTED_FILE,))
    model_path = scripted_measured.artifact(SCRIPTED_FILE)
    source = scripted_measured.request.settings  # the test set the torchscript measurement evaluated on
    data = evaluation_data(source)
    inputs, labels = sample_images(data.test, int(settings["images"]), int(source.get("seed", 0)))
    input_path = save_input(inputs, record.artifact(INPUT_FILE))

    toolchain = find_toolchain()
    build, problem = try_build(settings.get("build_dir") or None, str(settings["build_mode"]), toolchain)
    wanted = str(settings["device"])
    device = torch.device("cuda" if wanted == "cuda" and build is not None and build.mode == "cuda" else "cpu")
    scripted = load_scripted(model_path, device)
    threads = torch.get_num_threads()
    warmup, runs = int(settings["warmup_runs"]), int(settings["timed_runs"])
    python_logits = python_forward(scripted.module, inputs, device)
    single = inputs[:1].to(device)
    with torch.no_grad():
        python = summarize(time_calls(lambda: scripted.module(single), device, warmup, runs))
    cpp = comparison = cpp_summary = None
    if build is not None:
        cpp = run_program(build.executable, model_path, input_path, warmup, runs, device.type, threads)
        comparison = compare_predictions(python_logits, cpp.logits)
        cpp_summary = summarize(cpp.seconds)
    rows = [{"program": PYTHON_PROGRAM, **python.ms(), "noisy": python.noisy}]
    if cpp_summary is not None:
        rows.append({"program": CPP_PROGRAM, **cpp_summary.ms(), "noisy": cpp_summary.noisy})
    record.save_table(LATENCY_TABLE, pd.DataFrame(rows))
    record.log_results(
        cmake=version_of(toolchain.cmake_version) if toolchain.cmake else None,
        compiler=toolchain.compiler_version or None,
        nvcc_found=toolchain.nvcc is not None,
        cpp_built=build is not None,
        build_problem=problem,
        build_mode_used=build.mode if build else None,
        configure_s=build.configure_s if build else None,
        build_s=build.build_s if build else None,
        cuda_fallback_reason=build.fallback_reason if build else None,
        model_file=str(model_path),
        torchscript_run=scripted_measured.run_id,
        load_warnings=scripted.warnings,
        input_file=INPUT_FILE,
        input_shape=list(inputs.shape),
        labels=labels,
        measured_device=device.type,
        threads=threads,
        python_predicted=python_logits.argmax(1).tolist(),
        cpp_predicted=cpp.predicted if cpp else None,
        libtorch_version=cpp.torch_version if cpp else None,
        comparison=asdict(comparison) if comparison else None,
        python_latency=python.ms() | {"noisy": python.noisy},
        cpp_latency=(cpp_summary.ms() | {"noisy": cpp_summary.noisy}) if cpp_summary else None,
    )


def work_libtorch(request: Request) -> tuple[Work, ...]:
    """A CMake build (fixed seconds; seconds when the build folder is up to date), then warm-up + timed
    single-image calls on each side."""
    settings = request.settings
    calls = 2 * (int(settings.get("warmup_runs", 0)) + int(settings.get("timed_runs", 0)))
    return (Work(model="resnet18", device=str(settings.get("device", "cpu")), calls=calls, fixed_s=BUILD_S),)
