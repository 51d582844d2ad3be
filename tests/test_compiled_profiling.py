"""Unit tests (CPU) of lablib.sections.compiled (P-2025-C8) and lablib.sections.profiling (P-2025-XC)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.train import EpochRecord
from lablib.sections import compiled, profiling


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


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
    seen = []
    clock = compiled.BatchClock(torch.device("cpu"), seen.append)
    clock.start()
    clock(1)
    clock(1)
    assert len(clock.durations) == 2 and all(d >= 0 for d in clock.durations) and seen == [1, 1]


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


@pytest.mark.cuda
def test_profile_training_on_cuda_has_cuda_times(tmp_path):
    config = make_config(data="fake", limit_train=24, limit_test=16, batch_size=8, workers=0, device="cuda")
    result = profiling.profile_training(config, tmp_path / "trace.json", wait=1, warmup=1, active=1, progress=False)
    assert "self_cuda_ms" in result.operators and result.operators["self_cuda_ms"].sum() > 0
    assert result.activities == ["CPU", "CUDA"]
