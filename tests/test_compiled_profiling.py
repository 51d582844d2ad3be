"""Unit tests (CPU) of lablib.sections.compiled (P-2025-C8) and lablib.sections.profiling (P-2025-XC)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import Tiny
from torch import nn

from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.train import EpochRecord
from lablib.sections import compiled, profiling


def test_modes_and_steady_epochs():
    assert compiled.check_mode("reduce-overhead") == "reduce-overhead"
    with pytest.raises(ConfigError, match="compile_mode='fast'"):
        compiled.check_mode("fast")
    assert compiled.steady_epochs(10) == [6, 7, 8, 9, 10]
    assert compiled.steady_epochs(5) == [3, 4, 5]
    assert compiled.steady_epochs(2) == [2] and compiled.steady_epochs(1) == [1]
    with pytest.raises(ConfigError):
        compiled.steady_epochs(0)
    assert compiled.cuda_graphs_apply("reduce-overhead", torch.device("cuda"))
    assert not compiled.cuda_graphs_apply("reduce-overhead", torch.device("cpu"))
    assert not compiled.cuda_graphs_apply("default", torch.device("cuda"))


def test_prepare_model_is_lazy():
    model = Tiny()
    assert compiled.prepare_model(model, "eager") is model
    wrapped = compiled.prepare_model(model, "default")  # nothing is compiled until the first call
    assert wrapped is not model and wrapped._orig_mod is model


def test_batch_clock_durations():
    clock = compiled.BatchClock(torch.device("cpu"))
    clock.start(1)
    clock()
    clock()
    assert len(clock.durations) == 2 and all(d >= 0 for d in clock.durations)
    clock.start(2)  # a new epoch starts a new list
    assert clock.durations == []


def _epoch(number: int, total: float) -> EpochRecord:
    return EpochRecord(number, 1.0, 50.0, 0.1, total - 0.2, total, 100, 4, 100 / total)


def test_summary_from_epochs_and_steps():
    result = compiled.CompiledTraining(
        "default",
        torch.device("cpu"),
        epochs=[_epoch(1, 30.0)] + [_epoch(n, 10.0 + n) for n in range(2, 11)],
        first_epoch_steps_s=[20.0, 1.0, 2.0, 3.0],
    )
    summary = result.summary(10)
    assert summary["steady_epochs"] == [6, 7, 8, 9, 10]
    assert summary["steady_epoch_s"] == pytest.approx(18.0)  # mean of 16..20
    assert summary["first_epoch_s"] == 30.0 and summary["first_epoch_excess_s"] == pytest.approx(12.0)
    assert summary["compile_s"] == pytest.approx(18.0) and summary["median_step_s"] == 2.0
    one = compiled.CompiledTraining("eager", torch.device("cpu"), [_epoch(1, 5.0)], [5.0]).summary(1)
    assert one["steady_epochs"] == [1] and math.isnan(one["compile_s"]) and math.isnan(one["first_epoch_excess_s"])


def test_train_compiled_eager_records_each_step():
    config = make_config(data="fake", limit_train=32, limit_test=16, batch_size=16, epochs=2, workers=0, device="cpu")
    result = compiled.train_compiled(config, "eager", progress=False, model=Tiny_conv())
    assert not result.failed and [e.epoch for e in result.epochs] == [1, 2]
    assert len(result.first_epoch_steps_s) == result.epochs[0].batches == 2
    # the steps span the epoch (plus the iterator's creation just before the epoch timer starts)
    assert result.epochs[0].train_s <= sum(result.first_epoch_steps_s) <= result.epochs[0].total_s + 0.5


def test_train_compiled_reports_a_compile_failure(monkeypatch):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("InductorError: C++ compile failed: no compiler")

    monkeypatch.setattr(compiled, "prepare_model", lambda model, mode: Broken())
    config = make_config(data="fake", limit_train=16, limit_test=16, batch_size=16, epochs=2, workers=0, device="cpu")
    result = compiled.train_compiled(config, "default", progress=False, model=Tiny_conv())
    assert result.failed and "RuntimeError in epoch 1" in result.error and "no compiler" in result.error
    assert result.epochs == [] and result.summary(2)["compile_failed"]


def test_a_failure_after_the_first_epoch_keeps_the_epochs_done(monkeypatch):
    calls = []

    class FailsLater(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(1)
            if len(calls) > 2:  # epoch 1 has two batches
                raise RuntimeError("recompilation failed")
            return self.model(x)

    monkeypatch.setattr(compiled, "prepare_model", lambda model, mode: FailsLater(model))
    config = make_config(data="fake", limit_train=32, limit_test=16, batch_size=16, epochs=3, workers=0, device="cpu")
    result = compiled.train_compiled(config, "default", progress=False, model=Tiny_conv())
    assert [e.epoch for e in result.epochs] == [1] and len(result.first_epoch_steps_s) == 2
    assert result.error.startswith("RuntimeError in epoch 2")


# --- the sentences of P-2025-C8 ---------------------------------------------------------


def _summary(mode: str, **changes) -> dict:
    result = compiled.CompiledTraining(
        mode, torch.device("cpu"), [_epoch(1, 30.0), _epoch(2, 12.0)], first_epoch_steps_s=[9.0, 1.0, 1.5]
    )
    return {**result.summary(2), **changes}


def test_result_sentence_quotes_the_figures_of_each_case():
    compiled_cold = compiled.result_sentence(_summary("default"), 2, True, "cpu", 64, 32)
    assert "**7.75 s**" in compiled_cold and "30.00 s" in compiled_cold and "caches off" in compiled_cold
    assert "with 2 epochs instead of 10" in compiled_cold and "64 training images" in compiled_cold
    warm = compiled.result_sentence(_summary("default"), 10, False, "cpu", 64, 32)
    assert "caches allowed" in warm and "instead of 10" not in warm and "6, 7, 8, 9, 10" in warm
    eager = compiled.result_sentence(_summary("eager"), 2, True, "cpu", 64, 32)
    assert "without compiling" in eager and "caches" not in eager
    failed = compiled.result_sentence(
        _summary("max-autotune", compile_failed=True, compile_error="InductorError: no cc"), 2, True, "cpu", 64, 32
    )
    assert "Compile failed" in failed and "InductorError: no cc" in failed and "max-autotune" in failed


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = {"cold_compile": True, "epochs_done": 2, "final_loss": 1.0, "final_accuracy": 50.0, "run_id": "r"}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_modes_table_orders_modes_keeps_the_latest_and_computes_speedups():
    common = {"compile_failed": False, "first_epoch_s": 5.0, "first_step_s": 2.0, "median_step_s": 0.1}
    runs = _runs(
        [
            {"compile_mode": "max-autotune", "steady_epoch_s": 2.0, "compile_s": 3.0, "ended": "2", **common},
            {"compile_mode": "eager", "steady_epoch_s": 9.0, "compile_s": 0.5, "ended": "1", **common},
            {"compile_mode": "eager", "steady_epoch_s": 4.0, "compile_s": 0.5, "ended": "3", **common},
        ]
    )
    table = compiled.modes_table(runs)
    assert list(table["compile_mode"]) == ["eager", "max-autotune"]
    assert table["speedup_vs_eager"].tolist() == pytest.approx([1.0, 2.0])  # the later eager run (4 s) counts
    alone = compiled.modes_table(runs[runs["compile_mode"] == "max-autotune"])
    assert alone["speedup_vs_eager"].isna().all()


def test_conclusions_measure_every_mode_that_did_not_fail():
    common = {"first_epoch_s": 5.0, "first_step_s": 2.0, "median_step_s": 0.1, "ended": "1"}
    runs = _runs(
        [
            {"compile_mode": "eager", "compile_failed": False, "steady_epoch_s": 4.0, "compile_s": 0.5, **common},
            {"compile_mode": "default", "compile_failed": False, "steady_epoch_s": 2.0, "compile_s": 7.0, **common},
            {
                "compile_mode": "max-autotune",
                "compile_failed": True,
                "steady_epoch_s": None,
                "compile_s": None,
                **common,
            },
        ]
    )
    q1, q2, q3 = compiled.conclusions(compiled.modes_table(runs), [2])
    assert "TorchDynamo" in q1
    assert "`default` 2.00 s (2.00× eager)" in q2 and "max-autotune" not in q2.split("Measured here")[1]
    assert "`default`'s" in q2  # the fastest steady epoch
    assert "first-step excess 7.00 s" in q3 and "first-step excess 0.50 s" in q3
    (_, lonely, _) = compiled.conclusions(compiled.modes_table(runs[runs["compile_mode"] == "default"]), [2])
    assert "needs both an eager and a compiled run" in lonely


def test_cuda_graphs_note_depends_on_the_device():
    assert "Inductor skips them" in compiled.cuda_graphs_note("cpu")
    assert "apply on this GPU" in compiled.cuda_graphs_note("cuda")


# --- lablib.sections.profiling -----------------------------------------------------------------


def test_profile_training_writes_a_trace_and_an_operator_table(tmp_path):
    config = make_config(data="fake", limit_train=24, limit_test=16, batch_size=8, workers=0, device="cpu")
    result = profiling.profile_training(
        config, tmp_path / "trace.json", model=Tiny_conv(), wait=1, warmup=1, active=1, progress=False
    )
    assert profiling.check_trace(result.trace_path) > 0  # valid JSON with events
    names = set(result.operators["name"])
    assert {profiling.DATA_RANGE, profiling.STEP_RANGE} <= names
    assert result.range_ms(profiling.DATA_RANGE) > 0 and 0 < result.data_share < 1
    top = profiling.top_operators(result.operators, count=5)
    assert len(top) <= 5 and not set(top["name"]) & set(profiling.RANGES)
    assert list(top["self_cpu_ms"]) == sorted(top["self_cpu_ms"], reverse=True)
    assert 0 < profiling.share_of(result.operators, "conv") <= 100
    assert "self_cuda_ms" not in result.operators and result.activities == ["CPU"]
    # the lab's loop ran the profiled steps with its timing
    assert result.steps.batches == 3 and result.steps.data_s + result.steps.train_s <= result.steps.total_s
    assert result.forward_macs == 4 * 27 * 32 * 32 + 4 * 32 * 32 * 10  # conv (3x3x3 per output) + linear
    figures = profiling.summary(result, top=5)
    assert figures["trace_events"] == profiling.check_trace(result.trace_path) and figures["profiled_steps"] == 1
    assert figures["data_share"] == result.data_share and figures["top_operator"] == top.loc[0, "name"]
    assert len(figures["top_three"]) == 3 and figures["top_cuda_operator"] is None
    assert "needs a GPU" in profiling.cuda_view(result).data  # no CUDA table on the CPU
    ranges = profiling.ranges_table(figures)
    assert list(ranges["range"]) == list(profiling.RANGES)
    assert ranges["per_step_ms"].tolist() == pytest.approx([figures["data_loading_ms"], figures["train_step_ms"]])


def Tiny_conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))


def test_profile_schedule_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="active=0"):
        profiling.check_schedule(1, 1, 0)
    config = make_config(data="fake", limit_train=16, limit_test=16, batch_size=8, workers=0, device="cpu")
    with pytest.raises(ConfigError, match="needs 5 steps but one epoch has only 2 batches"):
        profiling.profile_training(
            config, tmp_path / "t.json", model=Tiny_conv(), wait=1, warmup=1, active=3, progress=False
        )
    with pytest.raises(ConfigError, match="by='nope'"):
        profiling.top_operators(profiling.operator_table([], torch.device("cpu")).assign(name=[]), by="nope")


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


def test_trace_sentence_names_the_file_and_the_missing_gpu():
    cpu = profiling.trace_sentence(_figures(), "cpu")
    assert "`trace.json`" in cpu and "1,234 events" in cpu and "0.5 MB" in cpu and "needs" not in cpu
    assert "No GPU here" in cpu and "No GPU" not in profiling.trace_sentence(_figures(), "cuda")


def test_conclusion_branches_on_workers_data_share_convolutions_and_device():
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


@pytest.mark.cuda
def test_profile_training_on_cuda_has_cuda_times(tmp_path):
    config = make_config(data="fake", limit_train=24, limit_test=16, batch_size=8, workers=0, device="cuda")
    result = profiling.profile_training(config, tmp_path / "trace.json", wait=1, warmup=1, active=1, progress=False)
    assert "self_cuda_ms" in result.operators and result.operators["self_cuda_ms"].sum() > 0
    assert result.activities == ["CPU", "CUDA"]
