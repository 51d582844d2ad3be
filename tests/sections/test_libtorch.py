"""XC-2026 (lablib.sections.libtorch): what it asks for, its tables, sentences and headline."""

from __future__ import annotations

import pandas as pd
import pytest

from lablib.core.errors import ConfigError
from lablib.core.libtorch import PYTHON_PROGRAM
from lablib.core.store import lookup
from lablib.core.timing import summarize
from lablib.sections.headlines import section_headlines
from lablib.sections.libtorch import (
    build_sentence,
    latency_sentence,
    model_sentence,
    prediction_sentence,
    predictions_table,
    program_latency_table,
    toolchain_table,
    xc_measurements,
    xc_results,
)
from lablib.sections.registry import presenter

PARAMS = {"data": "fake", "limit_train": 64, "limit_test": 40, "epochs": 1, "workers": 0, "device": "cpu"}


def timing(ms: list[float]) -> dict:
    summary = summarize([value / 1000 for value in ms])
    return summary.ms() | {"noisy": summary.noisy}


def xc_record(built: bool = True, python_ms=(2.0,) * 5, cpp_ms=(1.0,) * 5, same: bool = True) -> dict:
    """What lablib.core.libtorch records, built or not."""
    results = {
        "cmake": "3.25.1" if built else None,
        "compiler": "c++ (Debian 12.2.0) 12.2.0" if built else None,
        "nvcc_found": False,
        "cpp_built": built,
        "build_problem": None if built else "cannot build the LibTorch program: cmake not found on PATH. Install",
        "build_mode_used": "cpu-only" if built else None,
        "configure_s": 1.5 if built else None,
        "build_s": 20.0 if built else None,
        "cuda_fallback_reason": None,
        "model_file": "/runs/measurements/torchscript/abc/model_scripted.pt",
        "torchscript_run": "abc",
        "load_warnings": ["DeprecationWarning: `torch.jit.load` is deprecated."],
        "input_file": "input.pt",
        "input_shape": [3, 3, 32, 32],
        "labels": [0, 1, 2],
        "measured_device": "cpu",
        "threads": 2,
        "python_predicted": [0, 1, 1],
        "cpp_predicted": ([0, 1, 1] if same else [0, 1, 2]) if built else None,
        "libtorch_version": "2.13.0" if built else None,
        "comparison": (
            {
                "max_abs_diff": 1e-6 if same else 0.5,
                "allclose": same,
                "same_classes": same,
                "matching_classes": 3 if same else 2,
                "rows": 3,
                "atol": 1e-4,
                "rtol": 1e-4,
            }
            if built
            else None
        ),
        "python_latency": timing(list(python_ms)),
        "cpp_latency": timing(list(cpp_ms)) if built else None,
    }
    return results


def test_xc_asks_for_c7s_model_and_the_program():
    needs = xc_measurements({**PARAMS, "images": 4, "warmup_runs": 2, "timed_runs": 5}, lookup)
    training, scripted, program, counts = needs.requests
    c7 = presenter("c7_torchscript").needs(PARAMS, lookup).requests
    assert [training.key, scripted.key] == [request.key for request in c7]  # the same model as C7-C9
    assert program.kind == "libtorch" and program.settings["source"] == scripted.key
    assert program.settings["images"] == 4 and program.settings["device"] == "cpu" and counts.kind == "counts"
    with pytest.raises(ConfigError, match="build_mode='fast'"):
        xc_measurements({**PARAMS, "build_mode": "fast"}, lookup)


def test_tables():
    results = xc_record()
    tools = toolchain_table(results).iloc[0]
    assert tools["cmake"] == "3.25.1" and tools["nvcc"] == "not found" and tools["build"] == "cpu-only"
    assert toolchain_table(xc_record(built=False)).iloc[0]["build"] == "failed"
    predictions = predictions_table(results, ["cat", "dog", "ship"])
    assert predictions["label"].tolist() == ["cat", "dog", "ship"]
    assert predictions["Python class"].tolist() == predictions["C++ class"].tolist() == ["cat", "dog", "dog"]
    assert predictions_table(xc_record(built=False), ["cat", "dog", "ship"])["C++ class"].isna().all()
    frame = pd.DataFrame([{"program": PYTHON_PROGRAM, **results["python_latency"]}])
    assert program_latency_table(frame).columns.tolist()[:3] == ["program", "runs", "mean_ms"]


def test_build_model_and_prediction_sentences():
    failed = xc_record(built=False)
    assert "could not be built" in build_sentence(failed) and "cmake not found" in build_sentence(failed)
    assert "not measured" in prediction_sentence(failed)
    built = xc_record()
    assert "**cpu-only** configuration" in build_sentence(built) and "CPU only" in build_sentence(built)
    fallback = build_sentence({**built, "cuda_fallback_reason": "cuda configure failed (exit 1)"})
    assert "tried first and failed" in fallback and "cuda configure failed (exit 1)" in fallback
    assert "**cuda** configuration" in build_sentence({**built, "build_mode_used": "cuda"})
    text = model_sentence(built, "abc")
    assert "`model_scripted.pt` of the TorchScript measurement `abc`" in text and "3 class-balanced" in text
    assert "3×3×32×32" in text and "2 CPU threads" in text and "*DeprecationWarning" in text
    assert "torch.export" in text
    same = prediction_sentence(built)
    assert "LibTorch 2.13.0" in same and "the **same** class for all 3 images" in same and ": True)" in same
    assert "the same one for only 2 of 3 images" in prediction_sentence(xc_record(same=False))


@pytest.mark.parametrize(
    "python_ms,verdict",
    [(2.0, "The C++ call is faster"), (1.05, "within 10% of each other"), (0.5, "Python is faster here")],
)
def test_latency_sentence_judges_the_median_ratio(python_ms, verdict):
    results = xc_record(python_ms=(python_ms,) * 5, cpp_ms=(1.0,) * 5)
    text = latency_sentence(results, 10, 0.56)
    assert verdict in text and f"median ratio Python/C++ {python_ms:.2f}" in text and "1×3×32×32" in text
    assert "1.000 ms on average in C++" in text and "over 5 runs" in text and "noisy" not in text
    assert ("0.56-GMAC" in text) == verdict.startswith("within")


def test_latency_sentence_noisy_and_python_only():
    noisy = xc_record(cpp_ms=(1.0, 1.0, 1.0, 10.0))
    assert noisy["cpp_latency"]["noisy"]  # the one noise rule (lablib.core.timing) says so
    assert "The timings are noisy" in latency_sentence(noisy, 10, 0.56)
    only = latency_sentence(xc_record(built=False, python_ms=(1.0,) * 4), 10, 0.56)
    assert "only the Python side was measured: 1.000 ms" in only and "over 4 runs" in only


def test_xc_results_and_headline():
    answers = xc_results(xc_record())
    assert answers["cpp_built"] and answers["same_classes"] and answers["input_images"] == 3
    assert answers["cpp_mean_ms"] == pytest.approx(1.0) and answers["python_median_ms"] == pytest.approx(2.0)
    runs = pd.DataFrame([{"run_id": "r", "ended": "2026", "status": "complete", **answers}])
    (line,) = section_headlines("xc_libtorch", runs)
    assert line.value == pytest.approx(1.0) and line.spread == 0.0 and line.unit == "ms"
    assert line.text == "C++ and Python: same predicted classes; latency C++ 1.000 ± 0.000 ms vs Python 2.000 ms"
    unbuilt = pd.DataFrame([{"run_id": "r", "ended": "2026", **xc_results(xc_record(built=False))}])
    (line,) = section_headlines("xc_libtorch", unbuilt)
    assert line.text.startswith("C++ program not built: cannot build the LibTorch program") and line.value is None
