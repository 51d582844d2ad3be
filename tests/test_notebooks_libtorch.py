"""XC-2026 (LibTorch) executed by papermill on real images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import notebook_text

from lablib.core.model import resnet18
from lablib.core.runs import load_runs, start_run
from lablib.sections.libtorch import find_toolchain, script_model

DATA = {"limit_train": 64, "limit_test": 100, "device": "cpu"}


def test_xc_libtorch_uses_the_c7_model_and_matches_python(run_notebook, cifar_zip, tmp_path_factory):
    scripted, _ = script_model(resnet18().eval())
    with start_run("c7_torchscript", tag="xc") as c7:  # what C7 leaves behind
        scripted.save(str(c7.artifact("model_scripted.pt")))
    executed = run_notebook(
        "xc_libtorch",
        data=str(cifar_zip),
        tag="xc",
        images=6,
        warmup_runs=2,
        timed_runs=5,
        build_dir=str(tmp_path_factory.getbasetemp() / "libtorch-build"),
        **DATA,
    )
    runs = load_runs("xc_libtorch")
    assert len(runs) == 1
    record = runs.iloc[0]
    text = notebook_text(executed)
    assert record["model_from_c7"] and record["model_file"] == str(c7.artifact("model_scripted.pt"))
    assert f"C7 run `{c7.run_id}`" in text
    assert record["input_images"] == 6 and len(record["labels"]) == 6
    assert len(set(record["labels"])) > 1  # spread over classes, not the first images of one class
    latency = pd.read_csv(Path(record["path"]) / "latency.csv")
    python_row = latency.iloc[0]
    assert python_row["runs"] == 5 and f"{python_row['median_ms']:.3f} ms" in text
    if find_toolchain().missing:
        assert not record["cpp_built"] and "not found on PATH" in text and len(latency) == 1
        return
    assert record["cpp_built"] and record["build_mode_used"] in ("cuda", "cpu-only")
    assert record["same_classes"] and record["outputs_allclose"] and record["max_abs_diff"] <= 1e-4
    assert record["cpp_predicted"] == record["python_predicted"]
    assert len(latency) == 2 and latency.iloc[1]["runs"] == 5
    assert "predict the **same** classes" in text and f"{record['max_abs_diff']:.3g}" in text
    assert f"{latency.iloc[1]['mean_ms']:.3f} ms on average in C++" in text


def test_xc_libtorch_without_cmake_says_so(run_notebook, cifar_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the kernel is started by absolute path; cmake is not found
    executed = run_notebook(
        "xc_libtorch",
        data=str(cifar_zip),
        images=2,
        warmup_runs=1,
        timed_runs=2,
        build_dir=str(tmp_path / "build"),
        **DATA,
    )
    record = load_runs("xc_libtorch").iloc[0]
    text = notebook_text(executed)
    assert not record["cpp_built"] and "cmake and a C++ compiler not found on PATH" in record["build_problem"]
    assert "could not be built" in text and "not found on PATH" in text and "Traceback" not in text
    assert not record["model_from_c7"] and "freshly initialised ResNet-18" in text
    assert "only the Python side was measured" in text
    assert (Path(record["path"]) / "model_scripted.pt").exists()
