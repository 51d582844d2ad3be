"""lablib.core.compiled (the "compiled_training" kind) and lablib.core.compiles (compiles from torch's events)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lablib.core import compiled, compiles
from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.store import KINDS, lookup, obtain, work

# 40 images in batches of 16: two full batches and a partial one of 8, which the compiled runs drop.
NOT_A_MULTIPLE = {"data": "fake", "limit_train": 40, "limit_test": 16, "batch_size": 16, "workers": 0, "device": "cpu"}


def conv_model() -> nn.Module:
    """A one-convolution model: the lab's loop without ResNet-18's CPU cost."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))


def test_modes_and_steady_epochs():
    assert compiled.check_mode("reduce-overhead") == "reduce-overhead"
    with pytest.raises(ConfigError, match="compile mode 'fast' is not allowed"):
        compiled.check_mode("fast")
    assert compiled.steady_epochs(10) == [6, 7, 8, 9, 10]
    assert compiled.steady_epochs(5) == [3, 4, 5]
    assert compiled.steady_epochs(2) == [2] and compiled.steady_epochs(1) == [1]
    with pytest.raises(ConfigError):
        compiled.steady_epochs(0)
    assert compiled.cuda_graphs_apply("reduce-overhead", "cuda") and compiled.cuda_graphs_apply("max-autotune", "cuda")
    assert not compiled.cuda_graphs_apply("reduce-overhead", "cpu")
    assert not compiled.cuda_graphs_apply("default", "cuda")


def test_compile_model_is_lazy():
    model = conv_model()
    assert compiled.compile_model(model, "eager") is model
    wrapped = compiled.compile_model(model, "default")  # nothing is compiled until the first call
    assert wrapped is not model and wrapped._orig_mod is model


def test_the_request_keys_what_decides_the_run_and_says_its_work():
    config = make_config(**NOT_A_MULTIPLE, epochs=10)
    cold = compiled.compiled_request(config, "max-autotune", cold_compile=True)
    warm = compiled.compiled_request(config, "max-autotune", cold_compile=False)
    assert cold.kind == "compiled_training" and KINDS[cold.kind] == "lablib.core.compiled"
    assert cold.key != warm.key and cold.timing  # the cold compile is a setting in the key
    assert cold.settings["compile_mode"] == "max-autotune" and cold.settings["device"] == "cpu"
    assert "(cold)" in cold.label and "0 workers" in cold.label and "40 images" in cold.label
    # eager compiles nothing: asking for it cold or warm is one measurement
    eager = compiled.compiled_request(config, "eager", cold_compile=True)
    assert eager.key == compiled.compiled_request(config, "eager", cold_compile=False).key
    assert not eager.settings["cold_compile"] and "no compile" in eager.label
    (cost,) = work(cold)
    assert (cost.model, cost.engine, cost.epochs, cost.images, cost.compiles) == (
        "resnet18",
        "faithful",
        10.0,
        40,
        ("max-autotune",),
    )
    assert work(eager)[0].compiles == ()
    with pytest.raises(ConfigError, match="'turbo'"):
        compiled.compiled_request(config, "turbo")


def test_eager_drops_the_partial_batch_and_times_every_step():
    config = make_config(**NOT_A_MULTIPLE, epochs=2)
    result = compiled.train_compiled(config, "eager", model=conv_model())
    assert not result.failed and [e.epoch for e in result.epochs] == [1, 2]
    assert all(e.images == 32 and e.batches == 2 for e in result.epochs)  # 8 of 40 images dropped each epoch
    assert result.dropped_images == 8
    steps = result.steps_frame()
    assert steps["epoch"].tolist() == [1, 1, 2, 2] and steps["step"].tolist() == [1, 2, 1, 2]
    # each step's interval is the lab's training interval (plus the hook's own few microseconds)
    for epoch in result.epochs:
        timed = steps.loc[steps["epoch"] == epoch.epoch, "train_ms"].sum() / 1000
        assert epoch.train_s <= timed <= epoch.train_s + 0.05
    summary = result.summary(2)
    assert summary["steady_epochs"] == [2] and summary["steady_epoch_s"] == result.epochs[1].total_s
    assert summary["steady_train_s"] == result.epochs[1].train_s and summary["steady_train_s_std"] is None
    assert summary["first_epoch_train_s"] == result.epochs[0].train_s
    assert summary["compiles"] == 0 and summary["compile_s"] == 0.0 and summary["compile_counted"]
    assert summary["first_step_excess_s"] == pytest.approx(summary["first_step_s"] - summary["median_step_s"])
    assert not summary["cuda_graphs"] and summary["dropped_images"] == 8 and summary["epochs_run"] == 2


def test_the_steady_epochs_carry_their_spread():
    config = make_config(**NOT_A_MULTIPLE, epochs=4)
    summary = compiled.train_compiled(config, "eager", model=conv_model()).summary(4)
    assert summary["steady_epochs"] == [3, 4]
    assert summary["steady_train_s_std"] is not None and summary["steady_train_s_std"] >= 0


def test_a_batch_larger_than_the_images_is_one_line():
    config = make_config(**{**NOT_A_MULTIPLE, "batch_size": 64}, epochs=1)
    with pytest.raises(ConfigError, match="batch_size=64 is larger than the 40 training images"):
        compiled.train_compiled(config, "eager", model=conv_model())


def test_a_compile_failure_is_the_result(monkeypatch):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("InductorError: C++ compile failed: no compiler")

    monkeypatch.setattr(compiled, "compile_model", lambda model, mode: Broken())
    config = make_config(**NOT_A_MULTIPLE, epochs=2)
    result = compiled.train_compiled(config, "default", model=conv_model(), cold=False)
    assert result.failed and "RuntimeError in epoch 1" in result.error and "no compiler" in result.error
    assert result.epochs == [] and result.summary(2)["compile_failed"]
    assert math.isnan(result.summary(2)["steady_epoch_s"])


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

    monkeypatch.setattr(compiled, "compile_model", lambda model, mode: FailsLater(model))
    config = make_config(**NOT_A_MULTIPLE, epochs=3)
    result = compiled.train_compiled(config, "default", model=conv_model(), cold=False)
    assert [e.epoch for e in result.epochs] == [1] and len(result.step_seconds(1)) == 2
    assert result.error.startswith("RuntimeError in epoch 2")


def test_an_eager_measurement_is_recorded_and_reused():
    config = make_config(**NOT_A_MULTIPLE, epochs=1)
    request = compiled.compiled_request(config, "eager")
    measured = obtain(request)
    assert not measured.reused and lookup(request).run_id == measured.run_id
    results = measured.results
    assert results["compiles"] == 0 and results["epochs_run"] == 1 and results["train_images"] == 40
    assert results["dropped_images"] == 8 and results["model_class"] == "ResNet"
    assert [e["images"] for e in measured.epochs] == [32]
    assert len(measured.table("steps")) == 2 and measured.table("compiles").empty
    assert obtain(request).reused  # measured once


def test_a_log_counts_what_the_events_say():
    """The callbacks' arguments as torch passes them: a first compile, a recompile, a lazy backward, a graph."""

    class Args:
        def __init__(self, trigger: str, compile_id: str):
            self.callback_trigger = type("Trigger", (), {"name": trigger})()
            self.compile_id = compile_id

    log = compiles.CompileLog()
    log.mark(1)
    for trigger, compile_id in (("DYNAMO", "0/0"), ("LAZY_BACKWARD", "0/0"), ("CUDAGRAPH_RECORDING", "0/0")):
        log._start(Args(trigger, compile_id))
        log._end(Args(trigger, compile_id))
    log.mark(2)
    log._start(Args("DYNAMO", "0/1"))
    log._end(Args("DYNAMO", "0/1"))
    assert (log.compiles, log.recompiles, log.backward_compiles, log.cudagraph_recordings) == (2, 1, 1, 1)
    frame = log.frame()
    assert frame["epoch"].tolist() == [1, 1, 1, 2] and frame["attempt"].tolist() == [0, 0, 0, 1]
    assert log.compile_s == pytest.approx(frame.loc[frame["trigger"] != "CUDAGRAPH_RECORDING", "seconds"].sum())
    assert log.cudagraph_s == pytest.approx(frame.loc[2, "seconds"])
    assert compiles.CompileLog(counted=False).results()["compiles"] is None


@pytest.mark.slow
def test_one_compile_on_a_dataset_that_is_not_a_multiple_of_the_batch():
    """torch.compile on the CPU: the 40-image set's partial batch is dropped, so one shape compiles once;
    the same loop over every batch (the partial one included) compiles a second time, and the count sees it."""
    config = make_config(**NOT_A_MULTIPLE, epochs=2)
    result = compiled.train_compiled(config, "default", model=conv_model(), cold=False)
    if result.failed:  # a machine whose C++ compiler cannot build Inductor's code
        pytest.skip(f"Inductor cannot compile here: {result.error[:200]}")
    log = result.compile_log
    assert log.counted and log.compiles == 1 and log.recompiles == 0
    events = log.frame()
    assert set(events["epoch"]) == {1} and set(events["compile_id"]) == {"0/0"}
    assert result.summary(2)["compile_s"] == pytest.approx(
        events.loc[events["trigger"] != "CUDAGRAPH_RECORDING", "seconds"].sum()
    )
    assert 0 < log.compile_s <= result.step_seconds(1)[0]  # the compile happens inside epoch 1's first step
    assert all(e.images == 32 for e in result.epochs)

    compiles.fresh_compiler()
    model = torch.compile(conv_model(), dynamic=False)
    batches = [torch.randn(16, 3, 32, 32), torch.randn(16, 3, 32, 32), torch.randn(8, 3, 32, 32)]
    with compiles.count_compiles() as kept:
        for inputs in batches:  # the loader's three batches with the partial one kept
            model(inputs).sum().backward()
    assert kept.compiles == 2 and kept.recompiles == 1 and kept.compile_s > 0


@pytest.mark.cuda
def test_reduce_overhead_on_cuda_compiles_once_and_records_its_graphs():
    """On a GPU: one compile for the one shape, CUDA graphs recorded (counted apart), none recorded again."""
    config = make_config(**{**NOT_A_MULTIPLE, "device": "cuda"}, epochs=3)
    result = compiled.train_compiled(config, "reduce-overhead", model=conv_model(), cold=True)
    assert not result.failed, result.error
    log = result.compile_log
    assert log.compiles == 1 and log.recompiles == 0 and log.compile_s > 0
    assert log.cudagraph_recordings >= 1 and set(log.frame()["epoch"]) == {1}  # recorded once, in epoch 1
    summary = result.summary(3)
    assert summary["cuda_graphs"] and summary["steady_epochs"] == [2, 3]
    assert all(math.isfinite(e.loss) and e.images == 32 for e in result.epochs)
