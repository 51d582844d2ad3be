"""P-2025-XC (profiler) and P-2025-C8 (torch.compile) executed by papermill on real images."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import notebook_images, notebook_text

from lablib.core.runs import load_epochs, load_runs
from lablib.sections import compiled, profiling

DATA = {"limit_train": 64, "limit_test": 100, "device": "cpu"}


def test_p25_profiler(run_notebook, cifar_zip):
    executed = run_notebook(
        "p25_profiler", data=str(cifar_zip), workers=0, batch_size=16, wait=1, warmup=1, active=2, top=8, **DATA
    )
    record = load_runs("p25_profiler").iloc[0]
    trace = Path(record["path"]) / "trace.json"
    events = json.loads(trace.read_text())["traceEvents"]  # valid JSON
    assert len(events) == record["trace_events"] > 0
    assert any(e.get("name") == "data_loading" for e in events)  # the blind spot, labelled in the trace
    operators = pd.read_csv(Path(record["path"]) / "operators.csv")
    assert {"data_loading", "train_step"} <= set(operators["name"])
    assert 0 < record["data_share"] < 1 and record["convolution_share"] > 0
    assert record["profiled_steps"] == 2 and record["trace_file"] == "trace.json"
    text = notebook_text(executed)
    assert profiling.conclusion(record.to_dict(), 0, 16, "cpu") in text  # the sentence, from the recorded figures
    assert f"{record['data_loading_ms'] / 2:.1f}" in text and f"{100 * record['data_share']:.1f}" in text
    assert profiling.NO_CUDA_TABLE.strip("*") in text and notebook_images(executed) == 1


@pytest.mark.slow
def test_p25_compile_eager_and_default(run_notebook, cifar_zip):
    """Slow: torch.compile of ResNet-18 on a busy 2-core CPU takes ~10 s with a warm Inductor cache, 2-3 min cold."""
    params = {
        "data": str(cifar_zip),
        "epochs": 2,
        "batch_size": 32,
        "workers": 0,
        "cold_compile": False,
        "tag": "compile",
        **DATA,
    }
    run_notebook("p25_compile", compile_mode="eager", **params)
    executed = run_notebook("p25_compile", compile_mode="default", **params)
    runs = load_runs("p25_compile")
    assert sorted(runs["compile_mode"]) == ["default", "eager"] and runs["group"].nunique() == 1
    epochs = load_epochs("p25_compile")
    assert len(epochs) == 4 and set(epochs["images"]) == {64}
    by_mode = runs.set_index("compile_mode")
    text = notebook_text(executed)
    if by_mode.loc["default", "compile_failed"]:  # a machine whose compiler cannot build Inductor's code
        assert "Compile failed" in text and by_mode.loc["default", "compile_error"] in text
        return
    for mode in ("eager", "default"):
        row = by_mode.loc[mode]
        run_epochs = epochs[epochs["run_id"] == row["run_id"]].sort_values("epoch")
        assert row["first_epoch_s"] == pytest.approx(run_epochs["total_s"].iloc[0])
        assert row["steady_epoch_s"] == pytest.approx(run_epochs["total_s"].iloc[1])  # epochs after the first half
        assert row["compile_s"] == pytest.approx(row["first_step_s"] - row["median_step_s"])
    table = pd.read_csv(Path(by_mode.loc["default", "path"]) / "modes.csv")
    assert list(table["compile_mode"]) == ["eager", "default"]  # every mode recorded for the group
    speedup = by_mode.loc["eager", "steady_epoch_s"] / by_mode.loc["default", "steady_epoch_s"]
    assert table.set_index("compile_mode").loc["default", "speedup_vs_eager"] == pytest.approx(speedup)
    # the sentences are the builders' on the recorded figures
    summary = by_mode.loc["default"].to_dict() | {"compile_mode": "default"}
    assert compiled.result_sentence(summary, 2, False, "cpu", 64, 32) in text
    assert f"{by_mode.loc['default', 'compile_s']:.2f} s" in text and f"{speedup:.2f}× eager" in text
    for paragraph in compiled.conclusions(table, compiled.steady_epochs(2)):
        assert paragraph in text
    assert compiled.cuda_graphs_note("cpu") in text
    assert notebook_images(executed) == 1
