"""lablib.core.mobilenet and lablib.sections.efficiency on the CPU (CUDA variants marked)."""

import math
import shutil
import time

import pandas as pd
import pytest
import torch
from torch import nn

from lablib.core.config import make_config
from lablib.core.data import load_data
from lablib.core.errors import ConfigError
from lablib.core.mobilenet import InvertedResidual, make_divisible, mobilenet_v2
from lablib.core.model import count_macs, count_modules, count_parameters, resnet18
from lablib.sections.efficiency import (
    FAR_BELOW_MAC_RATIO,
    ModelSpec,
    Timing,
    accuracy_sentence,
    classify_error,
    compare,
    comparison_facts,
    conv_kind,
    describe,
    describe_models,
    findings_lines,
    kind_summary,
    layer_profile,
    measure,
    measurement_sentence,
    model_specs,
    parse_precisions,
    precision_speedups,
    ready_for_timing,
    time_models,
    timing_devices,
    train_models,
    widest_mobilenet,
    with_macs,
)

CPU = torch.device("cpu")


# --- the model --------------------------------------------------------------------------


def test_mobilenet_shapes_and_blocks():
    model = mobilenet_v2().eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_modules(model, InvertedResidual) == 17
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert all(m.kernel_size == (3, 3) for m in depthwise)
    assert model.head[0].out_channels == 1280 and model.fc.in_features == 1280


def test_linear_bottleneck_and_residual():
    block = InvertedResidual(24, 24, 6, 1)
    assert block.use_residual and not InvertedResidual(24, 32, 6, 1).use_residual
    assert not InvertedResidual(24, 24, 6, 2).use_residual
    assert isinstance(block.block[-1], nn.BatchNorm2d)  # no activation after the projection
    assert block.block[0].out_channels == 24 * 6  # expansion


def test_width_multiplier_scales_channels():
    assert make_divisible(32 * 0.5) == 16 and make_divisible(24 * 0.35) == 8 and make_divisible(100) == 104
    small, full, wide = (count_parameters(mobilenet_v2(width=w)) for w in (0.5, 1.0, 1.4))
    assert small < full < wide
    assert mobilenet_v2(width=0.5).stem[0].out_channels == 16
    assert mobilenet_v2(width=1.4).head[0].out_channels == make_divisible(1280 * 1.4)
    with pytest.raises(ValueError, match="width"):
        mobilenet_v2(width=0)


# --- MACs -----------------------------------------------------------------------------------


def test_count_macs_matches_the_formula_per_layer():
    dense = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(dense, (1, 3, 8, 8)) == 8 * 8 * 8 * 3 * 9  # H x W x Cout x Cin x k x k
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert count_macs(depthwise, (1, 8, 8, 8)) == 8 * 8 * 8 * 9  # one 3x3 filter per channel
    assert count_macs(nn.Linear(10, 5), (4, 10)) == 4 * 10 * 5


def test_count_macs_of_the_models():
    assert count_macs(resnet18()) / 1e9 == pytest.approx(0.56, abs=0.01)  # LAB_SPEC: about 0.56 GMACs
    macs = [count_macs(mobilenet_v2(width=w)) for w in (0.5, 1.0)]
    assert macs[0] < macs[1] < count_macs(resnet18()) / 5
    model = resnet18().train()
    count_macs(model)
    assert model.training  # the mode is restored


def test_describe_models():
    table = describe_models(model_specs("0.5"))
    assert table["model"].tolist() == ["resnet18", "mobilenetv2-0.5"]
    row = table.set_index("model").loc["resnet18"]
    assert row["parameters"] == 11_173_962 and row["convs"] == 20 and row["depthwise_convs"] == 0
    mobile = describe(ModelSpec("m", "mobilenetv2", 1.0))
    assert mobile["depthwise_convs"] == 17 and mobile["convs"] == 52
    assert mobile["macs_per_conv"] == pytest.approx(mobile["macs"] / 52)


def test_conv_kind():
    assert conv_kind(nn.Conv2d(8, 8, 3, groups=8)) == "depthwise"
    assert conv_kind(nn.Conv2d(8, 16, 1)) == "pointwise"
    assert conv_kind(nn.Conv2d(8, 16, 3)) == "dense"
    assert conv_kind(nn.Linear(3, 4)) == "linear"


def test_parsing_the_parameters():
    assert [s.label for s in model_specs(0.5)] == ["resnet18", "mobilenetv2-0.5"]
    assert [s.width for s in model_specs("0.25, 1", resnet=False)] == [0.25, 1.0]
    assert parse_precisions("FP32,bf16") == ["fp32", "bf16"]
    with pytest.raises(ConfigError, match="widths"):
        model_specs("0.5,x")
    with pytest.raises(ConfigError, match="must be > 0"):
        model_specs("0")
    with pytest.raises(ConfigError, match="fp8"):
        parse_precisions("fp32,fp8")
    with pytest.raises(ConfigError, match="empty"):
        parse_precisions(" , ")


# --- timing ---------------------------------------------------------------------------------


def tiny_model():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )


def test_measure_records_a_timing():
    timing = measure(tiny_model(), CPU, batch=4, warmup=1, runs=5, label="tiny")
    assert timing.status == "ok" and 1 <= timing.runs <= 5
    assert timing.p10_ms <= timing.median_ms <= timing.p90_ms
    assert timing.images_per_s == pytest.approx(4 / (timing.median_ms / 1e3))
    assert timing.first_call_s > 0 and timing.model == "tiny" and timing.device == "cpu"


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        time.sleep(0.05)
        return x


def test_measure_cuts_runs_to_the_budget():
    timing = measure(Slow(), CPU, batch=1, warmup=1, runs=100, budget_s=0.12)
    assert timing.status == "ok" and timing.runs <= 4  # the probe + about 0.12 s / 0.05 s
    assert timing.median_ms >= 50
    slow = measure(Slow(), CPU, batch=1, warmup=5, runs=100, budget_s=0.01)
    assert slow.status == "ok" and slow.runs == 1  # slower than the budget: timed once


class Broken(nn.Module):
    def __init__(self, message):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.message = message

    def forward(self, x):
        raise RuntimeError(self.message)


def test_measure_records_unsupported_and_failed():
    unsupported = measure(Broken("\"slow_conv2d_cpu\" not implemented for 'Half'"), CPU, 1, precision="fp16")
    assert unsupported.status == "unsupported" and "Half" in unsupported.note and math.isnan(unsupported.median_ms)
    failed = measure(Broken("something else"), CPU, 1)
    assert failed.status == "failed" and "something else" in failed.note
    assert classify_error(NotImplementedError("no kernel for bf16")) == "unsupported"


def test_time_models_covers_every_case():
    table = time_models(
        {"a": tiny_model(), "b": tiny_model()},
        [CPU],
        ["fp32", "bf16"],
        compile=False,
        latency_runs=2,
        throughput_batch=8,
        throughput_runs=2,
        warmup=1,
        progress=False,
    )
    assert len(table) == 2 * 2 * 2  # models x precisions x batches
    assert set(table["batch"]) == {1, 8} and set(table["mode"]) == {"eager"}
    assert set(table.columns) >= set(Timing.__dataclass_fields__)
    assert (table["status"] == "ok").all()


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("clang++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)
def test_compiled_model_is_timed():
    model = ready_for_timing(tiny_model(), CPU, "fp32", compiled=True)
    timing = measure(model, CPU, batch=2, warmup=1, runs=3, mode="compiled")
    assert timing.status == "ok", timing.note
    assert timing.first_call_s > timing.median_ms / 1e3  # the first call compiles


def test_timing_devices_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert timing_devices(True) == [CPU] and timing_devices(False) == [CPU]


@pytest.mark.cuda
def test_timing_on_the_gpu():
    devices = timing_devices(True)
    assert [d.type for d in devices] == ["cpu", "cuda"]
    model = mobilenet_v2(width=0.5)
    table = time_models(
        {"m": model},
        devices[1:],
        ["fp32", "fp16", "bf16"],
        compile=False,
        latency_runs=5,
        throughput_batch=64,
        throughput_runs=3,
        warmup=2,
        progress=False,
    )
    assert (table["status"] == "ok").all() and (table["device"] == "cuda").all()


# --- explanation ------------------------------------------------------------------------------


def test_layer_profile_and_kinds():
    layers = layer_profile(mobilenet_v2(width=0.25), CPU, batch=2, warmup=0, runs=1)
    assert len(layers) == 53  # 52 convolutions + the classifier
    assert layers["macs"].sum() == count_macs(mobilenet_v2(width=0.25), (2, 3, 32, 32))
    kinds = kind_summary(layers).set_index("kind")
    assert kinds.loc["depthwise", "layers"] == 17
    assert kinds["mac_share"].sum() == pytest.approx(100) and kinds["time_share"].sum() == pytest.approx(100)
    # 9 MACs per output element: a depthwise conv cannot reuse data the way a 1x1 conv over many channels does
    assert kinds.loc["depthwise", "macs_per_byte"] < kinds.loc["pointwise", "macs_per_byte"]


def synthetic_timings():
    rows = []
    for model, ms in (("big", 10.0), ("small", 5.0)):
        for precision, factor in (("fp32", 1.0), ("bf16", 0.5)):
            for batch in (1, 8):
                rows.append(
                    Timing(
                        model,
                        "cpu",
                        precision,
                        "eager",
                        batch,
                        "ok",
                        3,
                        ms * factor * batch,
                        images_per_s=1000 / (ms * factor),
                    ).to_dict()
                )
        rows.append(Timing(model, "cpu", "fp16", "eager", 8, "unsupported", note="Half").to_dict())
    return pd.DataFrame(rows)


def test_compare_findings_and_precision():
    models = pd.DataFrame(
        [
            {"model": "big", "macs": 1_000_000_000, "parameters": 100, "convs": 10, "macs_per_conv": 1e8},
            {"model": "small", "macs": 100_000_000, "parameters": 10, "convs": 50, "macs_per_conv": 2e6},
        ]
    )
    timings = synthetic_timings()
    both = compare(models, timings, "big", "small")
    row = both[(both["precision"] == "fp32") & (both["batch"] == 8)].iloc[0]
    assert row["mac_ratio"] == pytest.approx(10) and row["speedup"] == pytest.approx(2)
    assert row["reference_gmacs_per_s"] == pytest.approx(1e9 * 8 / 0.080 / 1e9)
    kinds = pd.DataFrame(
        [
            {"kind": "depthwise", "mac_share": 5.0, "time_share": 40.0, "gmacs_per_s": 1.0, "macs_per_byte": 1.0},
            {"kind": "pointwise", "mac_share": 95.0, "time_share": 60.0, "gmacs_per_s": 20.0, "macs_per_byte": 5.0},
        ]
    )
    facts = comparison_facts(models, timings, kinds, "big", "small", 8)
    assert facts["mac_ratio"] == pytest.approx(10) and facts["parameter_ratio"] == pytest.approx(10)
    assert facts["devices"]["cpu"]["speedup_batch1"] == pytest.approx(2)
    assert facts["depthwise_time_share"] == 40.0 and facts["other_convs"] == 50
    speedups = precision_speedups(timings, 8).set_index(["model", "precision"])
    assert speedups.loc[("big", "bf16"), "speedup_vs_fp32"] == pytest.approx(2)
    assert speedups.loc[("small", "fp16"), "status"] == "unsupported"
    assert math.isnan(speedups.loc[("small", "fp16"), "speedup_vs_fp32"])
    lines = findings_lines(facts, precision_speedups(timings, 8), "cpu", 4, 8)
    # 2x faster against 10x fewer MACs: far below the MAC ratio; depthwise ran slower per MAC (1 < 20 GMAC/s)
    assert FAR_BELOW_MAC_RATIO * facts["mac_ratio"] > 2
    assert lines[0].startswith("**E2.4:** `small` needs 10.0× fewer MACs and 10.0× fewer parameters than `big`")
    assert "2.00× as fast at batch 1" in lines[1] and "far less than the MAC ratio" in lines[1]
    assert "40.0 % of the layer time" in lines[2] and "they are memory-bound" in lines[2]
    assert "not visible in this run" in lines[3]  # the advantage is 2x at both batches
    assert "`small` cpu eager fp16 unsupported" in lines[4] and "`big` cpu eager bf16 2.00×" in lines[4]
    kinds.loc[0, "gmacs_per_s"] = 50.0  # depthwise now faster per MAC: the memory-bound claim is withheld
    facts = comparison_facts(models, timings, kinds, "big", "small", 8)
    assert "not confirmed by these numbers" in findings_lines(facts, precision_speedups(timings, 8), "cpu", 4, 8)[2]
    merged = with_macs(timings, models)
    assert (merged["status"] == "ok").all() and set(merged["where"]) == {"cpu eager"}
    assert merged["ms_per_image"].tolist() == pytest.approx((merged["median_ms"] / merged["batch"]).tolist())


def test_train_models_on_fake_data():
    config = make_config(device="cpu", data="fake", epochs=1, limit_train=64, limit_test=32, workers=0, batch_size=32)
    bundle = load_data("fake", limit_train=64, limit_test=32)
    models, table = train_models(model_specs("0.25", resnet=False), config, bundle, progress=False)
    assert list(models) == ["mobilenetv2-0.25"] and table.loc[0, "epochs"] == 1
    assert 0 <= table.loc[0, "test_accuracy"] <= 100 and not table.loc[0, "diverged"]


def test_findings_lines_judge_from_the_numbers():
    facts = {
        "reference": "big",
        "other": "small",
        "mac_ratio": 4.0,
        "parameter_ratio": 3.0,
        "reference_convs": 20,
        "other_convs": 50,
        "reference_macs_per_conv": 2e7,
        "other_macs_per_conv": 1e6,
        "devices": {"cpu": {"speedup_batch1": 1.5, "speedup_batch": 3.5}},
    }
    lines = findings_lines(facts, pd.DataFrame(columns=["model", "device", "mode", "precision", "status"]), "cpu", 4, 8)
    assert "far less" not in lines[1]  # 3.5x is above half of the 4x MAC ratio
    assert len(lines) == 4  # no layer profile facts: no depthwise line
    assert "as here: its advantage is smaller at batch 1" in lines[2]
    assert "nothing but fp32 was timed" in lines[3]
    facts["devices"]["cpu"] = {}  # nothing measured on that device
    assert findings_lines(facts, pd.DataFrame(), "cpu", 4, 8)[1] == "- on `cpu`: not measured in fp32, eager."


def test_accuracy_and_measurement_sentences():
    accuracy = pd.DataFrame(
        [
            {"model": "a", "test_accuracy": 41.234, "epoch_s": 2.0, "diverged": False},
            {"model": "b", "test_accuracy": math.nan, "epoch_s": 3.0, "diverged": True},
        ]
    )
    text = accuracy_sentence(accuracy, 2, 1280, "cpu")
    assert "after 2 epoch(s) on 1,280 images" in text and "`a` 41.23 % test accuracy" in text
    assert "`b` diverged" in text
    timings = synthetic_timings()
    sentence = measurement_sentence(timings, [CPU], use_compile=False)
    assert sentence.startswith(f"**E2.3:** {len(timings) - 2} of {len(timings)} measurements ran")
    assert sentence.count("unsupported (Half)") == 2
    assert "No GPU is visible" in sentence and "Compilation was skipped" in sentence
    ok = timings[timings["status"] == "ok"]
    clean = measurement_sentence(ok, [CPU, torch.device("cuda")], use_compile=True)
    assert clean == f"**E2.3:** {len(ok)} of {len(ok)} measurements ran."


def test_widest_mobilenet():
    assert widest_mobilenet(model_specs("0.5,1.4,1.0")).label == "mobilenetv2-1.4"
    with pytest.raises(ConfigError, match="widths"):
        widest_mobilenet(model_specs("0.5")[:1])  # ResNet-18 only
