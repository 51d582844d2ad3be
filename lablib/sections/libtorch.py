"""XC-2026 (extra credit: LibTorch): the scripted model loaded from C++, its prediction and its latency.

XC-2026 presents the base training, its TorchScript measurement (the very model C7 saved) and the
"libtorch" measurement (lablib.core.libtorch: the C++ program in cpp/ built against the LibTorch inside
torch, run on the saved model and a class-balanced sample of test images, beside Python running the
same scripted model on the same input), and the model's MAC count. A missing toolchain is recorded
with what to install: the section then shows the Python side and says why the C++ side is missing.
Python's median over C++'s judges the latency comparison (FASTER_RATIO, SLOWER_RATIO); a noisy timing
is the one noise rule's (lablib.core.timing.Summary.noisy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from lablib.core.config import config_from_params
from lablib.core.counts import counts_request
from lablib.core.latency import SINGLE_IMAGE
from lablib.core.libtorch import libtorch_request
from lablib.core.progress import counted
from lablib.core.timing import NOISY_RELATIVE
from lablib.sections.headlines import Headline, answer, latest, number, shown
from lablib.sections.latency import shape_text
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.torchscript import base_training, scripted_request

# Python's median over C++'s: above FASTER_RATIO the C++ call is faster, below SLOWER_RATIO Python is,
# in between the two are the same within the machine's noise.
FASTER_RATIO = 1.1
SLOWER_RATIO = 0.9
LATENCY_COLUMNS = ["program", "runs", "mean_ms", "median_ms", "std_ms", "p5_ms", "p95_ms", "noisy"]


def xc_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The base training, its TorchScript measurement, the LibTorch program on it, and the model's counts."""
    training = base_training(params)
    scripted = scripted_request(params)
    program = libtorch_request(
        scripted,
        str(training.settings["device"]),
        params.get("images", 8),
        params.get("warmup_runs", 50),
        params.get("timed_runs", 200),
        str(params.get("build_dir", "")),
        str(params.get("build_mode", "auto")),
    )
    config = config_from_params(params)
    note = "The model is the one C7 scripted and saved from the lab's base training (C1–C10 present the same)."
    return Needs((training, scripted, program, counts_request(batch_norm=config.batch_norm)), (note,))


# --- tables --------------------------------------------------------------------------------------------


def toolchain_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """What was found and how the program was built, one row (shown transposed)."""
    return pd.DataFrame(
        [
            {
                "cmake": results.get("cmake") or "not found",
                "C++ compiler": results.get("compiler") or "not found",
                "nvcc": "found" if results.get("nvcc_found") else "not found",
                "build": results.get("build_mode_used") or "failed",
                "configure (s)": number(results.get("configure_s")),
                "build (s)": number(results.get("build_s")),
            }
        ]
    )


def predictions_table(results: Mapping[str, Any], classes: list[str]) -> pd.DataFrame:
    """Per input image: its label, the class Python predicts and the class C++ predicts (names)."""
    name = lambda index: classes[index] if index is not None and 0 <= index < len(classes) else index  # noqa: E731
    labels = results["labels"]
    cpp = results.get("cpp_predicted") or [None] * len(labels)
    return pd.DataFrame(
        {
            "image": list(range(1, len(labels) + 1)),
            "label": [name(i) for i in labels],
            "Python class": [name(i) for i in results["python_predicted"]],
            "C++ class": [name(i) for i in cpp],
        }
    )


def program_latency_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-call statistics of each program (the measurement's `latency` table), in ms."""
    return table.reindex(columns=LATENCY_COLUMNS)


# --- the sentences ----------------------------------------------------------------------------------


def build_sentence(results: Mapping[str, Any]) -> str:
    """How the program was built, or why it could not be (then the C++ side is not measured)."""
    if not results.get("cpp_built"):
        return (
            "**The C++ program could not be built, so the C++ side of this section is not measured.**"
            f"\n\n```\n{results.get('build_problem') or 'no reason recorded'}\n```"
        )
    mode = results["build_mode_used"]
    how = (
        "(`find_package(Torch)` with the CUDA toolkit)."
        if mode == "cuda"
        else "(libtorch_cpu + libc10, no CUDA), so it runs on the CPU only."
    )
    text = f"**Build:** the program was built with the **{mode}** configuration {how}"
    if results.get("cuda_fallback_reason"):
        reason = results["cuda_fallback_reason"]
        text += f" The CUDA-enabled configure was tried first and failed:\n\n```\n{reason}\n```"
    return text


def model_sentence(results: Mapping[str, Any], torchscript_run: str) -> str:
    """Which model and which input both programs use, and what torch.jit said loading it."""
    shape = results["input_shape"]
    text = (
        f"**Model:** the scripted model C7 saved (`{results['model_file'].rsplit('/', 1)[-1]}` of the TorchScript "
        f"measurement `{torchscript_run}`, the model C8–C10 present too). **Input:** {shape[0]} class-balanced test "
        f"images, a {shape_text(shape)} float tensor saved to `{results['input_file']}`; both programs run on "
        f"`{results['measured_device']}` with {counted(int(results['threads']), 'CPU thread')}."
    )
    warnings = list(results.get("load_warnings") or [])
    if warnings:
        text += f"\n\n`torch.jit.load` warned: *{'; '.join(line.rstrip('.') for line in warnings)}*."
    if any(line.startswith("DeprecationWarning") for line in warnings):
        text += (
            " TorchScript is deprecated in this torch (new work should use `torch.export` and AOTInductor), but "
            "`torch.jit.load` in LibTorch still loads scripted models, which is what this section demonstrates."
        )
    return text


def prediction_sentence(results: Mapping[str, Any]) -> str:
    """XC-2026.1: do C++ and Python predict the same classes, and how close are their logits."""
    comparison = results.get("comparison")
    if not results.get("cpp_built") or not comparison:
        return "**XC-2026.1:** not measured: the C++ program could not be built (see the build message above)."
    rows = int(comparison["rows"])
    agreement = (
        f"the **same** class for all {rows} images"
        if comparison["same_classes"]
        else f"**different** classes: the same one for only {int(comparison['matching_classes'])} of {rows} images"
    )
    return (
        f"**XC-2026.1:** the C++ program (LibTorch {results['libtorch_version']}) and Python predict {agreement}; the "
        f"largest absolute difference between their logits is {comparison['max_abs_diff']:.3g} (`allclose` with atol "
        f"{comparison['atol']:g}, rtol {comparison['rtol']:g}: {comparison['allclose']})."
    )


def latency_sentence(results: Mapping[str, Any], warmup: int, gmacs: float) -> str:
    """XC-2026.2: C++ against Python latency of the same TorchScript model, judged by the medians' ratio.

    `gmacs` is the model's GMACs per image (the "counts" measurement), quoted when the two are close.
    """
    python, cpp = results["python_latency"], results.get("cpp_latency")
    device, threads = results["measured_device"], int(results["threads"])
    if not cpp:
        return (
            f"**XC-2026.2:** only the Python side was measured: {python['mean_ms']:.3f} ms per image "
            f"(median {python['median_ms']:.3f} ms over {int(python['runs'])} runs) for the TorchScript model on "
            f"`{device}`."
        )
    ratio = python["median_ms"] / cpp["median_ms"]
    text = (
        f"**XC-2026.2:** on `{device}` with {counted(threads, 'thread')}, after {warmup} warm-up runs, one "
        f"{shape_text(SINGLE_IMAGE)} image takes {cpp['mean_ms']:.3f} ms on average in C++ (median "
        f"{cpp['median_ms']:.3f} ms, sd {cpp['std_ms']:.3f} ms over {int(cpp['runs'])} runs) against "
        f"{python['mean_ms']:.3f} ms (median {python['median_ms']:.3f} ms, sd {python['std_ms']:.3f} ms) for the "
        f"same TorchScript model called from Python (median ratio Python/C++ {ratio:.2f}). "
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
    if python.get("noisy") or cpp.get("noisy"):
        text += (
            f" The timings are noisy (their 5th–95th percentile range is more than {NOISY_RELATIVE:g}× the median): "
            "the machine was busy, so the medians are the fairer comparison."
        )
    return text


def xc_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """XC-2026's answers for its record (the headline reads them)."""
    comparison = results.get("comparison") or {}
    python, cpp = results["python_latency"], results.get("cpp_latency") or {}
    return {
        "cpp_built": bool(results.get("cpp_built")),
        "build_problem": results.get("build_problem"),
        "build_mode_used": results.get("build_mode_used"),
        "measured_device": results["measured_device"],
        "input_images": len(results["labels"]),
        "same_classes": comparison.get("same_classes"),
        "outputs_allclose": comparison.get("allclose"),
        "max_abs_diff": comparison.get("max_abs_diff"),
        "python_mean_ms": python["mean_ms"],
        "python_median_ms": python["median_ms"],
        "python_std_ms": python["std_ms"],
        "cpp_mean_ms": cpp.get("mean_ms"),
        "cpp_median_ms": cpp.get("median_ms"),
        "cpp_std_ms": cpp.get("std_ms"),
    }


def xc_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    if not bool(row.get("cpp_built")):
        problem = str(row.get("build_problem") or "the build failed").splitlines()[0][:120]
        return [answer("xc_libtorch", "XC-2026", f"C++ program not built: {problem}", None, "", row)]
    same = "same predicted classes" if bool(row.get("same_classes")) else "different predicted classes"
    cpp, python = number(row.get("cpp_mean_ms")), number(row.get("python_mean_ms"))
    deviation = number(row.get("cpp_std_ms"))
    plus = f" ± {shown(deviation, 3)}" if deviation is not None else ""
    text = f"C++ and Python: {same}; latency C++ {shown(cpp, 3)}{plus} ms vs Python {shown(python, 3)} ms"
    return [answer("xc_libtorch", "XC-2026", text, cpp, "ms", row, deviation)]


PRESENTS = (Presenter("xc_libtorch", ("XC-2026",), xc_measurements, xc_headlines),)
