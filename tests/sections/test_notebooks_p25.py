"""P-2025-C8 (torch.compile), P-2025-XC (profiler) and X-FAST executed by papermill on real images (tiny parameters):
their measurements recorded once, their presenting records, and their text computed from those records."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import TINY, notebook_images, notebook_text, reads_well

from lablib.core.compiled import compiled_request
from lablib.core.config import make_config
from lablib.core.runs import load_runs
from lablib.core.store import lookup
from lablib.core.training import training_request
from lablib.sections import compiled, fast, profiling
from lablib.sections.headlines import section_headlines


def uses(run: pd.Series) -> list[dict]:
    """The measurements a presenting record shows (its run.json `uses`)."""
    with open(f"{run['path']}/run.json") as handle:
        return json.load(handle)["uses"]


def test_p25_profiler(run_notebook, cifar_zip):
    tiny = {k: v for k, v in TINY.items() if k != "epochs"}  # a profile is a few steps, not epochs
    params = {**tiny, "data": str(cifar_zip), "batch_size": 16, "wait": 1, "warmup": 1, "active": 2, "top": 8}
    executed = run_notebook("p25_profiler", **params)
    record = load_runs("p25_profiler").iloc[0]
    profile_use, counts_use = uses(record)
    assert (profile_use["kind"], counts_use["kind"]) == ("profile", "counts") and not profile_use["reused"]
    events = json.loads(open(f"{profile_use['path']}/trace.json").read())["traceEvents"]  # valid JSON
    assert len(events) == record["trace_events"] > 0
    assert any(e.get("name") == "data_loading" for e in events)  # the blind spot, labelled in the trace
    operators = pd.read_csv(f"{profile_use['path']}/operators.csv")
    assert {"data_loading", "train_step"} <= set(operators["name"])
    assert 0 < record["data_share"] < 1 and record["convolution_share"] > 0 and record["forward_gmacs"] > 0.5
    assert record["profiled_steps"] == 2 and record["trace_file"] == "trace.json"
    text = notebook_text(executed)
    assert profiling.conclusion(record.to_dict(), 0, 16, "cpu") in text  # the sentence, from the recorded figures
    assert f"{record['data_loading_ms'] / 2:.1f}" in text and f"{100 * record['data_share']:.1f}" in text
    assert profiling.NO_CUDA_TABLE.strip("*") in text and notebook_images(executed) == 1
    assert reads_well(executed) == 3  # top operators, the two ranges, the steps
    (line,) = section_headlines("p25_profiler", load_runs("p25_profiler"))
    assert line.complete and line.value == pytest.approx(record["top_operator_share"])


@pytest.mark.slow
def test_p25_compile_eager_and_default(run_notebook, cifar_zip):
    """Slow: torch.compile of ResNet-18 on a busy 2-core CPU (a minute or more with Inductor's caches on)."""
    # 250 images in batches of 32: 7 full batches, 26 images dropped each epoch; the same shape compiles once
    params = {**TINY, "data": str(cifar_zip), "limit_train": 250, "epochs": 2, "batch_size": 32}
    executed = run_notebook("p25_compile", modes="eager,default", cold_compile=False, **params)
    record = load_runs("p25_compile").iloc[0]
    used = uses(record)
    assert [u["kind"] for u in used] == ["compiled_training"] * 2
    config = make_config(**{**params, "workers": 0})
    eager, default = (lookup(compiled_request(config, mode, False)) for mode in ("eager", "default"))
    assert [u["key"] for u in used] == [eager.key, default.key]  # the records the planner names
    assert [e["images"] for e in default.epochs] == [224, 224] and default.results["dropped_images"] == 26
    text = notebook_text(executed)
    if default.results["compile_failed"]:  # a machine whose compiler cannot build Inductor's code
        assert "compile failed" in text and default.results["compile_error"][:40] in text
        return
    assert default.results["compiles"] == 1 and default.results["recompiles"] == 0  # counted from the events
    compiles = default.table("compiles")
    assert default.results["compile_s"] == pytest.approx(
        compiles.loc[compiles["trigger"] != "CUDAGRAPH_RECORDING", "seconds"].sum()
    )
    assert set(compiles["epoch"]) == {1} and eager.results["compiles"] == 0
    points = pd.DataFrame(record["compile_points"]).set_index("compile_mode")
    for mode, measured in (("eager", eager), ("default", default)):
        epochs = pd.DataFrame(measured.epochs)
        assert points.loc[mode, "first_epoch_train_s"] == pytest.approx(epochs["train_s"].iloc[0])
        assert points.loc[mode, "steady_train_s"] == pytest.approx(epochs["train_s"].iloc[1])  # epoch 2 of 2
        assert points.loc[mode, "steady_epoch_s"] == pytest.approx(epochs["total_s"].iloc[1])
    speedup = points.loc["eager", "steady_train_s"] / points.loc["default", "steady_train_s"]
    assert points.loc["default", "speedup_train_vs_eager"] == pytest.approx(speedup)
    table = compiled.modes_table(pd.DataFrame([{**row} for row in record["compile_points"]]))
    for paragraph in compiled.conclusions(table, [2]) + compiled.mode_sentences(table, [2]):
        assert paragraph in text  # the sentences, from the recorded figures
    assert compiled.full_batches_sentence(26, 250, 32) in text and compiled.cuda_graphs_note("cpu") in text
    assert notebook_images(executed) == 1 and reads_well(executed) == 2
    (line,) = section_headlines("p25_compile", load_runs("p25_compile"))
    assert line.complete and line.spread is None  # one steady epoch: no spread to give


def test_p25_compile_eager_only(run_notebook, cifar_zip):
    """No torch.compile: the notebook's path with one mode, which says the speed-up needs a compiled one."""
    params = {**TINY, "data": str(cifar_zip), "limit_train": 100, "epochs": 2, "batch_size": 32}
    executed = run_notebook("p25_compile", modes="eager", **params)
    record = load_runs("p25_compile").iloc[0]
    (point,) = record["compile_points"]
    assert point["compile_mode"] == "eager" and point["compiles"] == 0 and point["outcome"] == "trained"
    text = notebook_text(executed)
    assert "needs both eager and a compiled mode" in text and "(4 of 100 images at batch 32) is dropped" in text
    assert "epoch 2 (with 2 epochs instead of the lab's 10" in text
    assert "0 workers, as the `workers` parameter asks" in text
    assert notebook_images(executed) == 1 and reads_well(executed) == 2


def test_x_fast(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "batch_size": 64, "large_batch": 128, "use_compile": False}
    executed = run_notebook("x_fast", tag="test", **params)
    record = load_runs("x_fast", tag="test").iloc[0]
    used = uses(record)
    assert [u["kind"] for u in used] == ["training"] * 3 + ["counts"]
    config = make_config(**TINY, data=str(cifar_zip), batch_size=64)
    faithful = lookup(training_request(config))
    assert faithful is not None and used[0]["key"] == faithful.key  # C3's point for 0 workers: one training
    points = pd.DataFrame(record["fast_points"]).set_index("mode")
    assert points["batch_size"].tolist() == [64, 64, 128]
    assert points["mfu"].isna().all()  # a CPU has no peak in the table
    assert (points["train_images"] == 256).all() and points.loc["fast", "epoch_images"] == 256
    text = notebook_text(executed)
    rows = fast.mode_rows([lookup_use(u) for u in used])
    for paragraph in fast.findings(rows, "sqrt"):  # the sentences, from the records
        assert paragraph in text
    assert "not judged" in text and "derived from" in text  # 256 images: never judged, a full epoch only derived
    assert fast.basis_sentence(rows) in text and "The fast engine runs without torch.compile" in text
    assert executed.cells[0].source.startswith("# X-FAST · How fast can this go")
    assert "—" in text and "issue" not in text.lower()
    assert notebook_images(executed) == 1 and reads_well(executed) == 2
    (line,) = section_headlines("x_fast", load_runs("x_fast", tag="test"))
    assert line.complete and "per epoch of" in line.text and "derived" in line.text


def lookup_use(use: dict):
    """A presenting record's measurement, read back from the store by its request."""
    from lablib.core.store import Request

    with open(f"{use['path']}/run.json") as handle:
        return lookup(Request.from_dict(json.load(handle)["request"]))
