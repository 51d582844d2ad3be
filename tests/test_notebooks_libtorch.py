"""XC-2026 (LibTorch) executed by papermill on real images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import notebook_text, reads_well

from lablib.core.config import make_config
from lablib.core.data import load_data_for
from lablib.core.model import resnet18
from lablib.core.runs import load_runs, start_run
from lablib.sections.headlines import section_headlines
from lablib.sections.inference import SCRIPTED_FILE, STATE_DICT_FILE, save_state_dict, script_model
from lablib.sections.libtorch import find_toolchain

DATA = {"limit_train": 64, "limit_test": 100, "device": "cpu"}


def _c7_record(tag: str, data, model):
    """What C7 leaves behind: a complete record with both model files."""
    with start_run("c7_torchscript", make_config(device="cpu"), tag=tag, data=data) as c7:
        script_model(model).module.save(str(c7.artifact(SCRIPTED_FILE)))
        save_state_dict(model, c7.artifact(STATE_DICT_FILE))
    return c7


def test_xc_libtorch_uses_the_c7_model_and_matches_python(run_notebook, cifar_zip, tmp_path_factory):
    bundle = load_data_for(make_config(data=str(cifar_zip), **DATA))
    c7 = _c7_record("xc", bundle, resnet18().eval())
    other = _c7_record("xc", {"fingerprint": "another-data-source"}, resnet18().eval())  # newer, other data
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
    assert reads_well(executed) == 3  # the toolchain, the predictions, the latency
    (answer,) = section_headlines("xc_libtorch", runs)
    assert answer.complete and answer.run_id == record["run_id"]
    assert record["model_from_c7"] and record["model_file"] == str(c7.artifact(SCRIPTED_FILE))  # not `other`'s
    assert record["model_origin"] == f"c7_torchscript/{c7.run_id}" != f"c7_torchscript/{other.run_id}"
    assert record["model_origin"] in text
    assert record["input_images"] == 6 and len(record["labels"]) == 6
    assert len(set(record["labels"])) > 1  # spread over classes, not the first images of one class
    latency = pd.read_csv(Path(record["path"]) / "latency.csv")
    python_row = latency.iloc[0]
    assert python_row["runs"] == 5 and f"{python_row['median_ms']:.3f} ms" in text
    assert python_row["median_ms"] == record["python_median_ms"]
    if find_toolchain().missing:
        assert not record["cpp_built"] and "not found on PATH" in text and len(latency) == 1
        return
    assert record["cpp_built"] and record["build_mode_used"] in ("cuda", "cpu-only")
    assert record["same_classes"] and record["outputs_allclose"] and record["max_abs_diff"] <= 1e-4
    assert record["cpp_predicted"] == record["python_predicted"]
    assert len(latency) == 2 and latency.iloc[1]["runs"] == 5
    assert f"all {record['input_images']} images" in text and f"{record['max_abs_diff']:.3g}" in text
    assert f"{latency.iloc[1]['mean_ms']:.3f} ms" in text and f"over {latency.iloc[1]['runs']} runs" in text
    ratio = record["python_median_ms"] / record["cpp_median_ms"]
    assert f"median ratio Python/C++ {ratio:.2f}" in text


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
    assert record["build_problem"] in text and "Traceback" not in text
    assert not record["model_from_c7"] and record["model_origin"] == "scripted here"
    assert record["cpp_mean_ms"] is None and f"{record['python_mean_ms']:.3f} ms" in text
    assert (Path(record["path"]) / SCRIPTED_FILE).exists()
