"""The "latency" measurement: single-image inference latency of the base training's model, per runtime.

    request = latency_request(training, "cpu", warmup_runs=50, timed_runs=200, aoti=True, cpu_threads=0)
    measured = obtain(request)                  # lablib.core.store
    measured.table("latency")                   # one row per runtime: status, mean/median/std/p5/p95 (ms), ...

One request per device: a CPU-only machine measures the CPU rows, and the GPU rows come when a GPU is
there, each under its own key (the device kind is part of it). One 1 x 3 x 32 x 32 input, eval mode,
under torch.no_grad(); each runtime gets `warmup_runs` untimed calls, then `timed_runs` timed calls
through lablib.core.timing.time_calls (synchronised on a GPU), summarised by lablib.core.timing.summarize.
Runtimes (RUNTIMES): PyTorch eager; TorchScript (the model scripted, saved and reloaded with
torch.jit.load); torch.export (`torch.export.export(...).module()`, the exported ATen graph run from
Python); AOTInductor (the exported program compiled ahead of time into a .pt2 package and loaded with
aoti_load_package). Each runtime's output is compared with eager's on the same input.

A runtime that cannot run here is a row with its status and the reason, not a failure. AOTInductor's
preconditions (a C++ compiler; on a GPU also a CUDA toolkit) are checked before any compile time is
spent, and the toolchain found is part of the request (`toolchain`), so installing it measures again.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lablib.core.errors import ConfigError
from lablib.core.model import IMAGE_SHAPE
from lablib.core.store import Request, Work

RUNTIMES = ("PyTorch eager", "TorchScript", "torch.export", "AOTInductor")
SINGLE_IMAGE = (1, *IMAGE_SHAPE)  # one 1 x 3 x 32 x 32 image per call
DEVICES = ("cpu", "cuda")
LATENCY_TABLE = "latency"
MEASURED = "measured"  # a row's status when it was timed
EXAMPLE_SEED = 0  # the seeded example input every runtime is timed and checked on
COMPILERS = ("g++", "c++", "clang++")
# The dry run's estimates: torch.jit.script + save + load and torch.export of ResNet-18; an AOTInductor compile.
PREPARE_S = 15.0
AOTI_COMPILE_S = {"cpu": 120.0, "cuda": 180.0}


# --- the request -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def aoti_toolchain(device: str) -> str:
    """What AOTInductor needs on `device` that this machine has: the C++ compiler (and on a GPU the CUDA
    toolkit), in words; "" when something is missing (aoti_unavailable says what)."""
    compiler = next((shutil.which(name) for name in COMPILERS if shutil.which(name)), None)
    if compiler is None:
        return ""
    found = f"C++ compiler {compiler}"
    if device == "cuda":
        toolkit = cuda_toolkit()
        if toolkit is None:
            return ""
        found += f", CUDA toolkit {toolkit}"
    return found


def cuda_toolkit() -> str | None:
    """Where the CUDA toolkit is: $CUDA_HOME, $CUDA_PATH, or nvcc's folder; None when none is found."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and Path(root).is_dir():
            return str(root)
    nvcc = shutil.which("nvcc")
    return str(Path(nvcc).resolve().parent.parent) if nvcc else None


def latency_request(
    training: Request,
    device: str,
    warmup_runs: int = 50,
    timed_runs: int = 200,
    aoti: bool = True,
    cpu_threads: int = 0,
) -> Request:
    """Single-image latency of `training`'s model (which must keep its weights) on `device` ("cpu" or "cuda").

    `cpu_threads` (0: torch's default) is the intra-op thread count of a CPU request; a GPU request has none.
    """
    if training.kind != "training":
        raise ConfigError(f"latency_request takes a training request; got a {training.kind!r} request.")
    if device not in DEVICES:
        raise ConfigError(f"device={device!r} is not a latency device; expected one of {', '.join(DEVICES)}.")
    for name, value, least in (("warmup_runs", warmup_runs, 0), ("timed_runs", timed_runs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name}={value!r} is not allowed; expected an integer >= {least}.")
    if isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 0:
        raise ConfigError(f"cpu_threads={cpu_threads!r} is not allowed; expected 0 (torch's default) or a count >= 1.")
    settings: dict[str, Any] = {
        "source": training.key,
        "device": device,
        "warmup_runs": int(warmup_runs),
        "timed_runs": int(timed_runs),
        "aoti": bool(aoti),
    }
    if device == "cpu":
        settings["cpu_threads"] = int(cpu_threads)
    if aoti:
        settings["toolchain"] = aoti_toolchain(device)
    label = f"latency on {device} of the {training.label or 'training'}'s model"
    return Request("latency", settings, timing=True, label=label)


# --- the runtimes ----------------------------------------------------------------------------


def aoti_unavailable(device: torch.device, exported: Any) -> str | None:
    """Why AOTInductor cannot be compiled here (a row's status), or None when it can; nothing is compiled."""
    import torch._inductor as inductor

    missing = [name for name in ("aoti_compile_and_package", "aoti_load_package") if not hasattr(inductor, name)]
    if missing:
        return f"not available: torch {torch.__version__} has no torch._inductor.{', '.join(missing)}"
    if not any(shutil.which(compiler) for compiler in COMPILERS):
        return (
            "not available: no C++ compiler (g++, c++ or clang++) on PATH; AOTInductor compiles the model to C++ "
            "(install one: sudo apt-get install g++)"
        )
    if device.type == "cuda" and cuda_toolkit() is None:
        return (
            "not available: no CUDA toolkit (nvcc on PATH, or CUDA_HOME) for AOTInductor's GPU code "
            "(install the CUDA toolkit, or set CUDA_HOME)"
        )
    if exported is None:
        return "not available: torch.export failed, and AOTInductor compiles the exported program"
    return None


def _short(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def prepare_runtimes(
    model: nn.Module, device: torch.device, folder: Path, aoti: bool = True
) -> tuple[dict[str, Any], dict[str, float]]:
    """Each runtime of RUNTIMES ready to call on `device`, or its status ("skipped: ..." / "not available: ...");
    and the seconds each took to get ready. Files (the scripted model, the AOTInductor package) go in `folder`."""
    from lablib.core.timing import Stopwatch
    from lablib.core.torchscript import captured_warnings, load_scripted, save_scripted, script_model

    example = torch.randn(SINGLE_IMAGE, generator=torch.Generator().manual_seed(EXAMPLE_SEED)).to(device)
    eager = copy.deepcopy(model).to(device).eval()
    runtimes: dict[str, Any] = {"PyTorch eager": eager}
    seconds: dict[str, float] = {"PyTorch eager": 0.0}
    with Stopwatch(device) as watch:
        try:
            path = folder / "model_scripted.pt"
            save_scripted(script_model(copy.deepcopy(eager)).module, path)
            runtimes["TorchScript"] = load_scripted(path, device).module
        except Exception as error:  # a TorchScript removal in a later torch should not stop the table
            runtimes["TorchScript"] = f"not available: {_short(error)}"
    seconds["TorchScript"] = watch.seconds
    exported = None
    with Stopwatch(device) as watch:
        try:
            with torch.no_grad(), captured_warnings():
                exported = torch.export.export(eager, (example,))
            runtimes["torch.export"] = exported.module()
        except Exception as error:
            runtimes["torch.export"] = f"not available: {_short(error)}"
    seconds["torch.export"] = watch.seconds
    reason = aoti_unavailable(device, exported) if aoti else "skipped: the aoti parameter is False"
    if reason is None:
        import torch._inductor as inductor

        with Stopwatch(device) as watch:
            try:
                with captured_warnings():  # inductor's informational warnings are not the reader's concern
                    package = inductor.aoti_compile_and_package(
                        exported, package_path=str(folder / f"model_aoti_{device.type}.pt2")
                    )
                    runtimes["AOTInductor"] = inductor.aoti_load_package(package)
            except Exception as error:
                reason = f"not available: {_short(error)}"
        seconds["AOTInductor"] = watch.seconds
    if reason is not None:
        runtimes["AOTInductor"] = reason
    return runtimes, seconds


def latency_rows(
    model: nn.Module, device: torch.device, warmup_runs: int, timed_runs: int, aoti: bool, folder: Path
) -> list[dict[str, Any]]:
    """One row per runtime on `device`: status, latency statistics in ms (summarize), noisy flag, the largest
    output difference against eager, and the seconds it took to prepare."""
    from lablib.core.timing import summarize, time_calls
    from lablib.core.torchscript import max_abs_difference

    runtimes, prepared = prepare_runtimes(model, device, folder, aoti)
    example = torch.randn(SINGLE_IMAGE, generator=torch.Generator().manual_seed(EXAMPLE_SEED)).to(device)
    rows = []
    base = {"device": device.type, "warmup_runs": warmup_runs, "timed_runs": timed_runs}
    for runtime in RUNTIMES:
        module = runtimes[runtime]
        if isinstance(module, str):
            rows.append({**base, "runtime": runtime, "status": module, "prepare_s": prepared.get(runtime)})
            continue
        difference = max_abs_difference(runtimes["PyTorch eager"], module, example)
        with torch.no_grad():
            seconds = time_calls(lambda module=module: module(example), device, warmup_runs, timed_runs)
        summary = summarize(seconds)
        rows.append(
            {
                **base,
                "runtime": runtime,
                "status": MEASURED,
                **summary.ms(),
                "noisy": summary.noisy,
                "max_abs_diff": difference,
                "prepare_s": prepared.get(runtime),
            }
        )
    return rows


# --- measuring ---------------------------------------------------------------------------------


def measure_latency(request: Request, record) -> None:
    """Time every runtime on the request's device with the source training's model; the table is `latency`."""
    import pandas as pd

    from lablib.core.torchscript import source_measurement
    from lablib.core.train import resolve_device
    from lablib.core.training import WEIGHTS, trained_model

    settings = request.settings
    training = source_measurement("training", str(settings["source"]), keep=(WEIGHTS,))
    device = resolve_device(str(settings["device"]))
    model = trained_model(training, device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and int(settings.get("cpu_threads", 0)) > 0:
        torch.set_num_threads(int(settings["cpu_threads"]))
    try:
        with tempfile.TemporaryDirectory(prefix="lablib-latency-") as folder:
            rows = latency_rows(
                model,
                device,
                int(settings["warmup_runs"]),
                int(settings["timed_runs"]),
                bool(settings["aoti"]),
                Path(folder),
            )
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    table = pd.DataFrame(rows)
    table["threads"] = used
    record.save_table(LATENCY_TABLE, table)
    record.log_results(
        statuses={row["runtime"]: row["status"] for row in rows},
        threads_used=used,
        training_run=training.run_id,
        model_class=type(model).__name__,
        example_seed=EXAMPLE_SEED,
        torch_version=torch.__version__,
    )


def work_latency(request: Request) -> tuple[Work, ...]:
    """(warm-up + timed + 1 check) single-image calls per runtime that runs; scripting and export, and an
    AOTInductor compile when asked for, as fixed seconds."""
    settings = request.settings
    device = str(settings.get("device", "cpu"))
    aoti = bool(settings.get("aoti")) and bool(settings.get("toolchain"))
    runtimes = len(RUNTIMES) - (0 if aoti else 1)
    calls = (int(settings.get("warmup_runs", 0)) + int(settings.get("timed_runs", 0)) + 1) * runtimes
    fixed = PREPARE_S + (AOTI_COMPILE_S.get(device, AOTI_COMPILE_S["cpu"]) if aoti else 0.0)
    return (Work(model="resnet18", device=device, calls=calls, fixed_s=fixed),)
