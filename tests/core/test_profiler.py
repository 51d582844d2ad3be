"""lablib.core.profiler: the "profile" kind (torch.profiler over the lab's training steps, data loading visible)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lablib.core import profiler
from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.store import KINDS, obtain, work

FAKE = {"data": "fake", "limit_train": 24, "limit_test": 16, "batch_size": 8, "workers": 0, "device": "cpu"}


def conv_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))


def test_profile_training_writes_a_trace_an_operator_table_and_the_steps(tmp_path):
    config = make_config(**FAKE)
    result = profiler.profile_training(config, tmp_path / "trace.json", model=conv_model(), wait=1, warmup=1, active=1)
    assert profiler.trace_events(result.trace_path) > 0  # valid JSON with events
    names = set(result.operators["name"])
    assert {profiler.DATA_RANGE, profiler.STEP_RANGE} <= names
    assert result.range_ms(profiler.DATA_RANGE) > 0 and 0 < result.data_share < 1
    assert "self_cuda_ms" not in result.operators and result.activities == ["CPU"]
    assert list(result.operators["self_cpu_ms"]) == sorted(result.operators["self_cpu_ms"], reverse=True)
    # the lab's loop ran the profiled steps with its timing, and each wait and step was timed
    assert result.steps.batches == 3 and result.steps.data_s + result.steps.train_s <= result.steps.total_s
    steps = result.steps_frame()
    assert steps["phase"].tolist() == ["wait", "warmup", "active"] and steps["step"].tolist() == [1, 2, 3]
    assert steps["train_ms"].sum() / 1000 == pytest.approx(result.steps.train_s, abs=0.05)
    assert (steps["data_ms"] > 0).all()


def test_the_schedule_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="active=0"):
        profiler.check_schedule(1, 1, 0)
    with pytest.raises(ConfigError, match="wait=-1"):
        profiler.profile_request(make_config(**FAKE), wait=-1)
    config = make_config(**{**FAKE, "limit_train": 16})
    with pytest.raises(ConfigError, match="needs 5 steps but one epoch has only 2 batches"):
        profiler.profile_training(config, tmp_path / "t.json", model=conv_model(), wait=1, warmup=1, active=3)


def test_a_profile_is_a_measurement_with_its_trace_as_an_artifact():
    request = profiler.profile_request(make_config(**FAKE), wait=1, warmup=1, active=1)
    assert KINDS[request.kind] == "lablib.core.profiler" and request.timing
    assert "1+1+1 training steps" in request.label and "batch 8" in request.label
    assert request.key != profiler.profile_request(make_config(**FAKE), wait=1, warmup=1, active=2).key
    measured = obtain(request)
    trace = measured.artifact(profiler.TRACE)
    events = json.loads(trace.read_text())["traceEvents"]
    assert len(events) == measured.results["trace_events"] > 0
    assert any(event.get("name") == profiler.DATA_RANGE for event in events)  # the blind spot, labelled
    operators = measured.table("operators")
    assert {profiler.DATA_RANGE, profiler.STEP_RANGE} <= set(operators["name"])
    results = measured.results
    assert results["profiled_steps"] == 1 and results["train_images"] == 24 and results["model_class"] == "ResNet"
    assert 0 < results["data_share"] < 1 and results["activities"] == ["CPU"]
    assert len(measured.table("steps")) == 3 and measured.epochs[0]["batches"] == 3
    assert obtain(request).reused


def test_its_work_is_a_fraction_of_an_epoch():
    request = profiler.profile_request(make_config(data="cifar10", batch_size=128, device="cpu"), 1, 1, 5)
    (cost,) = work(request)
    assert cost.images == 50_000 and cost.epochs == pytest.approx(7 / 391) and cost.compiles == ()


@pytest.mark.cuda
def test_a_profile_on_cuda_has_cuda_times(tmp_path):
    config = make_config(**{**FAKE, "device": "cuda"})
    result = profiler.profile_training(config, tmp_path / "trace.json", wait=1, warmup=1, active=1)
    assert "self_cuda_ms" in result.operators and result.operators["self_cuda_ms"].sum() > 0
    assert result.activities == ["CPU", "CUDA"] and torch.cuda.is_initialized()
