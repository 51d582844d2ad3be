"""lablib.sections.profiling: P-2025-XC's planner, figures from a recorded profile, tables, sentences, headline."""

from __future__ import annotations

import pandas as pd
import pytest
from factories import record_measurement

from lablib.core.config import make_config
from lablib.core.counts import counts_request
from lablib.core.errors import ConfigError
from lablib.core.profiler import DATA_RANGE, STEP_RANGE, profile_request
from lablib.sections import profiling
from lablib.sections.headlines import section_headlines
from lablib.sections.tables import present

PARAMS = {"data": "fake", "device": "cpu", "limit_train": 64, "workers": 2, "batch_size": 16}
NOTHING = lambda request: None  # noqa: E731


def operators(cuda: bool = False) -> pd.DataFrame:
    rows = [
        ("aten::convolution_backward", 6, 40.0, 45.0),
        ("aten::cudnn_convolution", 6, 20.0, 25.0),
        ("aten::native_batch_norm", 6, 10.0, 12.0),
        ("aten::relu_", 6, 5.0, 5.0),
        ("aten::add_", 12, 5.0, 5.0),
        (DATA_RANGE, 2, 1.0, 30.0),
        (STEP_RANGE, 2, 19.0, 100.0),
        ("ProfilerStep#3", 1, 0.0, 130.0),
    ]
    table = pd.DataFrame(rows, columns=["name", "calls", "self_cpu_ms", "cpu_total_ms"])
    table["self_cpu_percent"] = 100 * table["self_cpu_ms"] / table["self_cpu_ms"].sum()
    if cuda:
        table["self_cuda_ms"] = [30.0, 25.0, 4.0, 1.0, 1.0, 0.0, 0.0, 0.0]
        table["self_cuda_percent"] = 100 * table["self_cuda_ms"] / table["self_cuda_ms"].sum()
        table["cuda_total_ms"] = table["self_cuda_ms"]
    return table


def recorded_profile(cuda: bool = False):
    request = profile_request(make_config(**PARAMS), wait=1, warmup=1, active=2)
    results = {
        "trace_file": "trace.json",
        "trace_events": 1234,
        "trace_mb": 0.5,
        "activities": ["CPU", "CUDA"] if cuda else ["CPU"],
        "profiled_steps": 2,
        "data_loading_ms": 30.0,
        "train_step_ms": 100.0,
        "data_share": 30.0 / 130.0,
        "train_images": 64,
    }
    measured = record_measurement(request, results=results)
    operators(cuda).to_csv(measured.artifact("operators.csv"), index=False)
    steps = pd.DataFrame(
        {"step": [1, 2, 3, 4], "phase": ["wait", "warmup", "active", "active"], "data_ms": 15.0, "train_ms": 50.0}
    )
    steps.to_csv(measured.artifact("steps.csv"), index=False)
    counts = record_measurement(counts_request("resnet18"), results={"macs": 556_000_000, "training_flops": 3.3e9})
    return measured, counts


def test_the_planner_asks_for_the_profile_and_the_model_s_counts():
    needs = profiling.p25_profiler_measurements({**PARAMS, "wait": 2, "warmup": 1, "active": 3}, NOTHING)
    profile, counts = needs.requests
    assert profile.kind == "profile" and counts.kind == "counts" and counts.settings["model"] == "resnet18"
    assert (profile.settings["wait"], profile.settings["warmup"], profile.settings["active"]) == (2, 1, 3)
    assert profile.settings["workers"] == 2 and "2 workers, as the `workers` parameter asks" in needs.notes[0]
    chosen = profiling.p25_profiler_measurements({**PARAMS, "workers": -1}, NOTHING)
    assert chosen.requests[0].settings["workers"] == 2 and "the lab's default of 2 workers" in chosen.notes[0]
    with pytest.raises(ConfigError, match="active=0"):
        profiling.p25_profiler_measurements({**PARAMS, "active": 0}, NOTHING)


def test_the_top_operators_leave_our_ranges_out():
    table = operators()
    top = profiling.top_operators(table, count=3)
    assert top["name"].tolist() == ["aten::convolution_backward", "aten::cudnn_convolution", "aten::native_batch_norm"]
    ranges = profiling.top_operators(table, count=10, include_ranges=True)
    assert STEP_RANGE in ranges["name"].tolist()
    assert profiling.share_of(table, "convolution") == pytest.approx(75.0)  # 60 of the 80 ms of operators
    with pytest.raises(ConfigError, match="by='nope'"):
        profiling.top_operators(table, by="nope")
    view = profiling.operator_view(table, top=2)
    assert list(view.columns) == ["name", "calls", "self_cpu_ms", "self_cpu_percent", "cpu_total_ms"]
    assert "self CPU time (ms)" in present(view).data.columns


def test_the_figures_come_from_the_records():
    profile, counts = recorded_profile()
    figures = profiling.figures(profile, counts, top=5)
    assert figures["top_operator"] == "aten::convolution_backward" and figures["profiled_steps"] == 2
    assert figures["top_operator_share"] == pytest.approx(40.0)  # 40 of the 100 ms of self CPU time recorded
    assert figures["convolution_share"] == pytest.approx(75.0) and figures["batch_norm_share"] == pytest.approx(12.5)
    assert figures["forward_gmacs"] == pytest.approx(0.556) and figures["top_cuda_operator"] is None
    assert len(figures["top_three"]) == 3 and figures["data_share"] == pytest.approx(30 / 130)
    ranges = profiling.ranges_table(figures)
    assert ranges["range"].tolist() == [DATA_RANGE, STEP_RANGE] and ranges["per_step_ms"].tolist() == [15.0, 50.0]
    assert "per step (ms)" in present(ranges).data.columns
    steps = profiling.steps_view(profile)
    assert steps["phase"].tolist() == ["wait", "warmup", "active", "active"]
    assert "schedule phase" in present(steps).data.columns
    assert profiling.NO_CUDA_TABLE in profiling.cuda_view(profile.table("operators"), "cpu").data


def test_on_a_gpu_the_cuda_table_is_shown():
    profile, counts = recorded_profile(cuda=True)
    figures = profiling.figures(profile, counts)
    assert figures["top_cuda_operator"] == "aten::convolution_backward"
    shown = profiling.cuda_view(profile.table("operators"), "cuda", top=2).data
    assert "self CUDA time (ms)" in shown.columns and len(shown) == 2


def _figures(**changes) -> dict:
    figures = {
        "trace_file": "trace.json",
        "trace_events": 1234,
        "trace_mb": 0.5,
        "activities": ["CPU"],
        "profiled_steps": 2,
        "data_loading_ms": 10.0,
        "train_step_ms": 90.0,
        "data_share": 0.1,
        "top_operator": "aten::conv",
        "top_operator_self_cpu_ms": 30.0,
        "top_operator_share": 40.0,
        "top_three": ["aten::conv", "aten::bn", "aten::relu"],
        "top_three_share": 70.0,
        "convolution_share": 60.0,
        "batch_norm_share": 12.0,
        "top_cuda_operator": None,
        "forward_gmacs": 0.556,
    }
    return {**figures, **changes}


def test_the_trace_sentence_names_the_file_and_the_missing_gpu():
    cpu = profiling.trace_sentence(_figures(), "cpu")
    assert "`trace.json`" in cpu and "1,234 events" in cpu and "0.5 MB" in cpu and "perfetto" in cpu
    assert "No GPU here" in cpu and "No GPU" not in profiling.trace_sentence(_figures(), "cuda")


def test_the_conclusion_branches_on_workers_data_share_convolutions_and_device():
    compute_bound = profiling.conclusion(_figures(), workers=2, batch_size=16, device_type="cpu")
    assert "5.0 ms per step for data" in compute_bound and "45.0 ms per step" in compute_bound
    assert "10.0 % of the step" in compute_bound and "compute-bound" in compute_bound
    assert "outside this process" in compute_bound and "0.56 GMACs" in compute_bound
    assert "`aten::conv` with 40.0 %" in compute_bound and "15.0 ms per step" in compute_bound
    assert "self CUDA column" not in compute_bound
    data_bound = profiling.conclusion(
        _figures(data_share=0.5, convolution_share=20.0), workers=0, batch_size=16, device_type="cuda"
    )
    assert "50.0 % of the step" in data_bound and "would pay off" in data_bound and "0 workers" in data_bound
    assert "do not dominate" in data_bound and "self CUDA column" in data_bound
    edge = profiling.conclusion(_figures(data_share=profiling.DATA_BOUND_SHARE), 1, 16, "cpu")
    assert "would pay off" in edge  # at the threshold, input counts as the bottleneck


def test_the_headline_reads_the_recorded_answers():
    runs = pd.DataFrame(
        [{"run_id": "r", "ended": "1", "status": "complete", **_figures(top_operator_share=41.3, data_share=0.25)}]
    )
    (line,) = section_headlines("p25_profiler", runs)
    assert line.part == "P-2025-XC" and line.value == pytest.approx(41.3)
    assert "top operator aten::conv: 41.3 % of self CPU time" in line.text
    assert "data loading 25.0 % of the profiled steps" in line.text
