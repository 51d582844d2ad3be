"""lablib.core.inference: the inference_timing, layer_profile and device_busy measurements on the CPU
(a tiny MobileNetV2, width 0.1: about 6 M MACs); the GPU variants are marked cuda."""

import shutil
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType

from lablib.core import inference
from lablib.core.errors import ConfigError
from lablib.core.inference import (
    busy_intervals,
    classify_error,
    conv_kind,
    device_busy_request,
    layer_profile_request,
    precision_support,
    timed_calls,
    timing_request,
    union_length,
)
from lablib.core.mobilenet import mobilenet_v2
from lablib.core.model import count_macs
from lablib.core.store import KINDS, lookup, obtain, work

TINY_WIDTH = 0.1  # MobileNetV2 x0.1: every channel count rounds up to 8, 53 layers, about 6 M MACs
CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("clang++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)


def test_the_kinds_are_registered():
    for kind in ("inference_timing", "layer_profile", "device_busy"):
        assert KINDS[kind] == "lablib.core.inference"


# --- what the device supports --------------------------------------------------------------------


def test_precision_support_on_the_cpu_follows_its_arithmetic():
    assert precision_support("cpu", "fp32", {}) == ""
    assert precision_support("cpu", "bf16", {"avx512_bf16": True}) == ""
    assert precision_support("cpu", "bf16", {"amx_bf16": True}) == ""
    assert precision_support("cpu", "fp16", {"amx_fp16": True}) == ""
    reason = precision_support("cpu", "fp16", {"avx512_bf16": True, "avx512_fp16": False})
    assert "no native fp16 arithmetic" in reason and "AVX512-FP16 or AMX-FP16" in reason
    assert "AVX512-BF16 or AMX-BF16" in precision_support("cpu", "bf16", {})
    assert precision_support("cuda", "fp16") == ""  # every GPU torch supports has fp16
    with pytest.raises(ConfigError, match="fp8"):
        precision_support("cpu", "fp8", {})


def test_this_cpus_capabilities_decide_without_error():
    capabilities = inference.cpu_capabilities()
    for precision in ("bf16", "fp16"):
        native = any(capabilities.get(feature) for feature in inference.NATIVE_CPU[precision])
        assert (precision_support("cpu", precision) == "") == native


# --- requests -----------------------------------------------------------------------------------------


def test_requests_check_their_settings():
    request = timing_request("mobilenet_v2", width=0.5, precision="bf16", batch=4, compile=True)
    assert request.kind == "inference_timing" and request.timing
    assert request.settings["width"] == 0.5 and request.settings["compile"] == "default"
    assert "compiled" in request.label and "×0.5" in request.label
    assert "width" not in timing_request("resnet18").settings  # a width names only MobileNetV2
    assert timing_request("resnet18", batch=1).key != timing_request("resnet18", batch=2).key
    with pytest.raises(ConfigError, match="vgg"):
        timing_request("vgg")
    with pytest.raises(ConfigError, match="fp8"):
        timing_request("resnet18", precision="fp8")
    with pytest.raises(ConfigError, match="auto"):
        timing_request("resnet18", device="auto")
    with pytest.raises(ConfigError, match="batch=0"):
        timing_request("resnet18", batch=0)
    with pytest.raises(ConfigError, match="mode='eval'"):
        device_busy_request("resnet18", mode="eval")
    with pytest.raises(ConfigError, match="steps=0"):
        device_busy_request("resnet18", steps=0)
    with pytest.raises(ConfigError, match="max_runs=0"):
        layer_profile_request("resnet18", max_runs=0)


def test_work_says_what_each_costs():
    (eager,) = work(timing_request("resnet18", batch=8, max_runs=3, warmup=2))
    assert eager.calls == 8 * (1 + 2 + 3) and eager.compiles == () and eager.model == "resnet18"
    (compiled,) = work(timing_request("mobilenet_v2", width=0.5, compile=True, device="cuda", precision="fp16"))
    assert compiled.compiles == ("default",) and compiled.width == 0.5 and compiled.device == "cuda"
    (training,) = work(device_busy_request("resnet18", mode="training", batch=4, steps=3, warmup=1))
    assert training.images == 16 and training.epochs == 1.0 and training.engine == "fast"
    (layers,) = work(layer_profile_request("resnet18", batch=2, warmup=1, max_runs=2))
    assert layers.calls == 2 * (2 + 1 + 2)


# --- timing ---------------------------------------------------------------------------------------------


def test_a_timing_is_measured_once_and_summarised():
    request = timing_request("mobilenet_v2", width=TINY_WIDTH, batch=2, max_runs=3, warmup=1, budget_s=30.0)
    measured = obtain(request)
    results = measured.results
    assert results["status"] == "ok" and results["note"] == ""
    assert results["runs"] == 3  # within the budget: every run asked for
    assert results["p5_ms"] <= results["median_ms"] <= results["p95_ms"]
    assert results["min_ms"] <= results["mean_ms"] <= results["max_ms"]
    assert results["images_per_s"] == pytest.approx(2 / (results["median_ms"] / 1e3))
    assert results["first_call_s"] > 0 and results["graphs_compiled"] == 0 and results["threads"] >= 1
    assert isinstance(results["noisy"], bool)
    again = obtain(request)
    assert again.reused and again.run_id == measured.run_id  # measured once


class Sleeper(nn.Module):
    def forward(self, x):
        time.sleep(0.05)
        return x


def test_timed_calls_keep_to_the_budget():
    sleeper = Sleeper()
    seconds = timed_calls(lambda: sleeper(None), CPU, max_runs=100, warmup=1, budget_s=0.12)
    assert 2 <= len(seconds) <= 4  # the probe, then about 0.12 s / 0.05 s more
    assert min(seconds) >= 0.05
    assert len(timed_calls(lambda: sleeper(None), CPU, max_runs=100, warmup=5, budget_s=0.01)) == 1


class Broken(nn.Module):
    def __init__(self, message: str):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.message = message

    def forward(self, x):
        raise RuntimeError(self.message)


def test_a_missing_kernel_is_recorded_not_raised(monkeypatch):
    monkeypatch.setattr(inference, "fresh_model", lambda settings: Broken("\"conv\" not implemented for 'Half'"))
    results = obtain(timing_request("resnet18", precision="fp16")).results
    assert results["status"] == "unsupported" and "Half" in results["note"] and "median_ms" not in results
    monkeypatch.setattr(inference, "fresh_model", lambda settings: Broken("something else"))
    failed = obtain(timing_request("resnet18", precision="fp16", batch=2)).results
    assert failed["status"] == "failed" and "something else" in failed["note"]
    assert classify_error(NotImplementedError("no kernel for bf16")) == "unsupported"


def test_fp16_on_the_cpu_is_timed_or_recorded_unsupported():
    # torch 2.11+ runs fp16 convolutions on the CPU (slowly without AVX512-FP16); an older build has no kernel.
    results = obtain(timing_request("mobilenet_v2", width=TINY_WIDTH, precision="fp16", max_runs=1, warmup=0)).results
    assert results["status"] in ("ok", "unsupported")
    assert results["status"] == "unsupported" or results["median_ms"] > 0


class SmallConv(nn.Module):
    """A convolution, a pool and a classifier: compiles in seconds on the CPU."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1), 1))


@pytest.mark.slow
@needs_compiler
def test_each_shape_is_compiled_once_before_timing(monkeypatch):
    monkeypatch.setattr(inference, "fresh_model", lambda settings: SmallConv())
    for batch in (1, 4):  # the second shape is compiled afresh, not recompiled inside the timed calls
        results = obtain(timing_request("resnet18", batch=batch, compile=True, max_runs=3, warmup=1)).results
        assert results["status"] == "ok", results["note"]
        assert results["graphs_compiled"] == 1 and results["recompiles_while_timed"] == 0
        assert results["first_call_s"] > results["median_ms"] / 1e3  # the first call compiles


# --- each layer alone ------------------------------------------------------------------------------------


def test_conv_kind():
    assert conv_kind(nn.Conv2d(8, 8, 3, groups=8)) == "depthwise"
    assert conv_kind(nn.Conv2d(8, 16, 1)) == "pointwise"
    assert conv_kind(nn.Conv2d(8, 16, 3)) == "dense"
    assert conv_kind(nn.Linear(3, 4)) == "linear"


def test_layer_profile_counts_and_times_every_layer():
    measured = obtain(layer_profile_request("mobilenet_v2", width=TINY_WIDTH, batch=2, warmup=0, max_runs=1))
    layers, results = measured.table("layers"), measured.results
    assert len(layers) == results["layers"] == 53  # 52 convolutions and the classifier
    assert results["convolutions"] == 52 and results["depthwise_convolutions"] == 17
    assert results["pointwise_convolutions"] == 34 and results["dense_convolutions"] == 1
    assert layers["macs"].sum() == results["macs_total"] == count_macs(mobilenet_v2(width=TINY_WIDTH), (2, 3, 32, 32))
    assert (layers["median_ms"] > 0).all()
    kinds = layers.groupby("kind")["macs"].sum() / layers.groupby("kind")["bytes"].sum()
    # 9 MACs per output element: a depthwise conv cannot reuse data the way a 1x1 conv over many channels does
    assert kinds["depthwise"] < kinds["pointwise"]


# --- how busy the device is ---------------------------------------------------------------------------------


def test_union_length_counts_overlaps_once_and_clips():
    assert union_length([(0, 10), (2, 5), (8, 12), (20, 30)], 0, 25) == pytest.approx(12 + 5)
    assert union_length([(5, 6), (0, 1)], 2, 4) == 0
    assert union_length([], 0, 10) == 0


def event(name, start, end, device=DeviceType.CPU, parent=None):
    return SimpleNamespace(
        name=name,
        device_type=device,
        is_async=False,
        cpu_parent=parent,
        time_range=SimpleNamespace(start=start, end=end),
    )


def test_busy_intervals_of_the_host_and_of_a_gpu():
    window = event("lablib::profiled_steps", 0, 100)
    conv = event("aten::conv2d", 10, 40, parent=window)
    inner = event("aten::convolution", 12, 38, parent=conv)
    relu = event("aten::relu", 50, 55, parent=window)
    kernels = [event("sm90_kernel", 20, 45, DeviceType.CUDA), event("elementwise", 60, 62, DeviceType.CUDA)]
    events = [window, conv, inner, relu, *kernels]
    host, operators, count = busy_intervals(events, "cpu")
    assert host == [(10, 40), (50, 55)] and operators == 2 and count == 2  # the nested op is not counted again
    gpu, _, _ = busy_intervals(events, "cuda")
    assert gpu == [(20, 45), (60, 62)]
    assert union_length(gpu, 0, 100) == 27


def test_device_busy_on_the_cpu_is_time_inside_operators():
    common = {"width": TINY_WIDTH, "batch": 2, "steps": 2, "warmup": 1}
    forward = obtain(device_busy_request("mobilenet_v2", mode="inference", **common)).results
    assert 0 < forward["busy_fraction"] <= 1
    assert forward["busy_ms_per_step"] <= forward["wall_ms_per_step"]
    assert forward["kernels_per_step"] is None and "ATen operators" in forward["busy_means"]
    assert forward["operators_per_step"] >= 52  # at least one operator per convolution
    training = obtain(device_busy_request("mobilenet_v2", mode="training", **common)).results
    assert training["operators_per_step"] > forward["operators_per_step"]  # backward and the step add operators
    assert lookup(device_busy_request("mobilenet_v2", mode="training", **common)) is not None


# --- on a GPU ------------------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_timings_and_busy_on_the_gpu():
    for precision in ("fp32", "fp16", "bf16"):
        if precision_support("cuda", precision):
            continue
        for compiled in (False, True):
            results = obtain(
                timing_request(
                    "mobilenet_v2",
                    width=0.5,
                    device="cuda",
                    precision=precision,
                    batch=64,
                    compile=compiled,
                    max_runs=5,
                )
            ).results
            assert results["status"] == "ok", results["note"]
            assert results["recompiles_while_timed"] == 0
    busy = obtain(device_busy_request("mobilenet_v2", width=0.5, device="cuda", batch=1, steps=5)).results
    assert 0 < busy["busy_fraction"] <= 1 and busy["kernels_per_step"] > 0
    assert "GPU kernels" in busy["busy_means"]
    layers = obtain(layer_profile_request("mobilenet_v2", width=0.5, device="cuda", batch=8)).results
    assert layers["depthwise_convolutions"] == 17
