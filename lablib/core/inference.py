"""What a model's forward costs when it runs: timed calls, each layer alone, and how busy the device is.

Three kinds of measurement (lablib.core.store), each of a model built by name the way a training
builds it (lablib.core.training.build_model: "resnet18", "mobilenet_v2" with its width), freshly
initialised with a fixed seed: a forward's time depends on the shapes and the precision, not on
what the weights learned, so one timing serves every training of that model.

    obtain(timing_request("mobilenet_v2", width=1.0, device="cpu", precision="bf16", batch=1))
        "inference_timing": eval mode, no_grad, channels_last, the model and input cast to the
        precision (true fp16/bf16, not autocast: a missing kernel shows as "unsupported"), eager or
        torch.compile'd (dynamic=False, compiled afresh for this one input shape and warmed up
        before any call is timed, so no timed call compiles); repeated calls summarised by
        lablib.core.timing.summarize.
    obtain(layer_profile_request("mobilenet_v2", width=1.0, device="cpu", batch=32))
        "layer_profile": every convolution and the classifier run alone on the input it gets in the
        model: MACs (FlopCounterMode), the bytes it must at least move, their ratio (arithmetic
        intensity) and its median time.
    obtain(device_busy_request("resnet18", device="cuda", mode="training", batch=256))
        "device_busy": torch.profiler over a few steps; busy time / wall time of those steps.

The busy fraction. On a GPU, "busy" is the union of the intervals in which a kernel (or a copy)
runs on it; the rest of the wall time the GPU waits for the host to launch work. On the CPU the
device is the host itself: "busy" is the union of the intervals the process spends inside ATen
operators (the tensor arithmetic), the rest is Python and the framework between operators. The
profiler's own bookkeeping lengthens the wall time of short operators a little on both.

`precision_support(device_type, precision)` says whether a low precision is measured on a device
at all (and why not): a CPU without native bf16 or fp16 arithmetic would emulate it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lablib.core.errors import ConfigError
from lablib.core.store import Request, Work
from lablib.core.timing import Stopwatch, summarize, synchronize, time_calls

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODELS = ("resnet18", "mobilenet_v2")
MODES = ("inference", "training")
MODEL_SEED = 0  # every timed model is initialised from this seed: the same weights for every timing of it
IMAGE = (3, 32, 32)  # C x H x W of a CIFAR-10 image
CLASSES = 10
WINDOW = "lablib::profiled_steps"  # the profiler range around the steps whose busy time is measured
# Errors that mean "no kernel for this dtype on this device", not a bug: recorded as "unsupported".
UNSUPPORTED_MARKERS = ("not implemented for", "not supported", "Unsupported", "no kernel", "does not support")
# CPU features that give native arithmetic for a precision (torch.cpu.get_capabilities() names).
NATIVE_CPU = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


# --- what the device supports ---------------------------------------------------------------------


def cpu_capabilities() -> dict[str, Any]:
    """The CPU's features as torch sees them ({} where this torch cannot say)."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        try:
            return dict(capabilities())
        except RuntimeError:
            pass
    found = {}
    for name, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_fp16", "_is_amx_fp16_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            found[name] = bool(check())
    return found


def precision_support(device_type: str, precision: str, capabilities: Mapping[str, Any] | None = None) -> str:
    """Why `precision` is not measured on `device_type` ("cuda" | "cpu"), or "" when it is.

    fp32 runs everywhere. On a GPU fp16 runs on every GPU torch supports, bf16 from Ampere on. On
    the CPU a low precision is measured only where the CPU has native arithmetic for it (AVX512-BF16
    or AMX-BF16; AVX512-FP16 or AMX-FP16): elsewhere PyTorch emulates it through conversions far
    slower than fp32, which times the emulation, not the precision.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is unknown; expected one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return ""
    if device_type == "cuda":
        if precision == "bf16" and not _cuda_bf16():
            return "this GPU has no bf16 arithmetic (bf16 needs an Ampere or newer GPU)"
        return ""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    features = NATIVE_CPU[precision]
    if any(capabilities.get(feature) for feature in features):
        return ""
    names = " or ".join(feature.upper().replace("_", "-") for feature in features)
    return (
        f"this CPU has no native {precision} arithmetic ({names}); PyTorch would emulate it through conversions "
        f"far slower than fp32, so {precision} on the CPU needs such a CPU (or a GPU)"
    )


def _cuda_bf16() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch whose is_bf16_supported takes no argument
        return bool(torch.cuda.is_bf16_supported())


def _check(model: str, precision: str, device: str) -> None:
    if model not in MODELS:
        raise ConfigError(f"model={model!r} is unknown; expected one of {', '.join(MODELS)}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is unknown; expected one of {', '.join(PRECISIONS)}.")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r}: an inference measurement runs on 'cpu' or 'cuda' (resolved).")


def model_settings(model: str, width: float) -> dict[str, Any]:
    """The settings that name a model: its name, and its width multiplier for MobileNetV2."""
    return {"model": model, **({"width": float(width)} if model == "mobilenet_v2" else {})}


def model_words(settings: Mapping[str, Any]) -> str:
    """'resnet18' or 'mobilenet_v2 ×0.5'."""
    name = str(settings["model"])
    return f"{name} ×{float(settings['width']):g}" if name == "mobilenet_v2" else name


# --- requests ---------------------------------------------------------------------------------------


def timing_request(
    model: str,
    *,
    width: float = 1.0,
    device: str = "cpu",
    precision: str = "fp32",
    batch: int = 1,
    compile: bool = False,
    channels_last: bool = True,
    max_runs: int = 30,
    warmup: int = 3,
    budget_s: float = 10.0,
) -> Request:
    """The timing of `batch`-image forward calls of `model` on `device` (a resolved 'cpu' or 'cuda').

    `max_runs` timed calls at most: the calls after the first are cut so the timed ones take about
    `budget_s` seconds (a case slower than the budget is timed once); `warmup` untimed calls first.
    """
    _check(model, precision, device)
    if batch < 1 or max_runs < 1 or warmup < 0 or budget_s <= 0:
        raise ConfigError(
            f"batch={batch}, max_runs={max_runs}, warmup={warmup}, budget_s={budget_s}: expected batch >= 1, "
            "max_runs >= 1, warmup >= 0 and budget_s > 0."
        )
    settings = {
        **model_settings(model, width),
        "device": device,
        "precision": precision,
        "channels_last": bool(channels_last),
        "compile": "default" if compile else "none",
        "batch": int(batch),
        "max_runs": int(max_runs),
        "warmup": int(warmup),
        "budget_s": float(budget_s),
    }
    mode = "compiled" if compile else "eager"
    label = f"inference {model_words(settings)} {precision} batch {batch}, {mode}, on {device}"
    return Request("inference_timing", settings, timing=True, label=label)


def layer_profile_request(
    model: str,
    *,
    width: float = 1.0,
    device: str = "cpu",
    batch: int = 32,
    channels_last: bool = True,
    warmup: int = 2,
    max_runs: int = 5,
) -> Request:
    """Each convolution and the classifier of `model` timed alone (fp32, eval) at `batch` on `device`."""
    _check(model, "fp32", device)
    if batch < 1 or max_runs < 1 or warmup < 0:
        raise ConfigError(f"batch={batch}, max_runs={max_runs}, warmup={warmup}: expected >= 1, >= 1 and >= 0.")
    settings = {
        **model_settings(model, width),
        "device": device,
        "batch": int(batch),
        "channels_last": bool(channels_last),
        "warmup": int(warmup),
        "max_runs": int(max_runs),
    }
    return Request("layer_profile", settings, timing=True, label=f"layer profile {model_words(settings)} on {device}")


def device_busy_request(
    model: str,
    *,
    width: float = 1.0,
    device: str = "cpu",
    mode: str = "inference",
    batch: int = 1,
    steps: int = 20,
    warmup: int = 3,
    channels_last: bool = True,
) -> Request:
    """How busy `device` is over `steps` fp32 steps of `model` (mode "inference": a forward under no_grad;
    "training": forward, loss, backward and an SGD step) at `batch` random images, after `warmup` steps."""
    _check(model, "fp32", device)
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is unknown; expected one of {', '.join(MODES)}.")
    if batch < 1 or steps < 1 or warmup < 0:
        raise ConfigError(f"batch={batch}, steps={steps}, warmup={warmup}: expected >= 1, >= 1 and >= 0.")
    settings = {
        **model_settings(model, width),
        "device": device,
        "mode": mode,
        "batch": int(batch),
        "steps": int(steps),
        "warmup": int(warmup),
        "channels_last": bool(channels_last),
    }
    label = f"device busy {model_words(settings)} {mode} batch {batch} on {device}"
    return Request("device_busy", settings, timing=True, label=label)


# --- the model as timed -------------------------------------------------------------------------------


def fresh_model(settings: Mapping[str, Any]) -> nn.Module:
    """The model a request names, initialised from MODEL_SEED (the caller's random state is left alone)."""
    from lablib.core.training import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MODEL_SEED)
        return build_model({"model": settings["model"], "width": settings.get("width", 1.0)}, IMAGE[0], CLASSES)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def random_images(batch: int, device: torch.device, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """B x 3 x 32 x 32 normal values, seeded, in the dtype and memory format asked."""
    generator = torch.Generator().manual_seed(MODEL_SEED)
    images = torch.randn(batch, *IMAGE, generator=generator).to(device=device, dtype=dtype)
    return images.contiguous(memory_format=memory_format(channels_last))


def classify_error(error: BaseException) -> str:
    """'unsupported' when no kernel exists for the dtype on the device, else 'failed'."""
    text = str(error)
    return "unsupported" if any(marker in text for marker in UNSUPPORTED_MARKERS) else "failed"


def short_error(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def compiled_graphs() -> int | None:
    """How many graphs torch.compile has compiled in this process (Dynamo's counter); None where unknown."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except (ImportError, AttributeError, KeyError, TypeError):
        return None


def _difference(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def timed_calls(call: Callable[[], object], device: torch.device, max_runs: int, warmup: int, budget_s: float):
    """One timed call (the probe that sets the pace), then up to `max_runs` - 1 more after `warmup` untimed
    ones, cut so the timed calls take about `budget_s`: a slow case costs seconds, not minutes."""
    seconds = time_calls(call, device, warmup=0, runs=1)
    affordable = int(budget_s / max(seconds[0], 1e-9))  # calls that fit in the budget
    more = min(max_runs - 1, affordable)
    if more > 0:
        seconds += time_calls(call, device, warmup=min(warmup, affordable), runs=more)
    return seconds


def measure_inference_timing(request: Request, record) -> None:
    """Time the request's forward calls into `record`: status, the Summary in ms, images/s, the first call.

    Compiled: Dynamo is reset first (every MobileNetV2 shares one forward code object, and Dynamo stops
    recompiling after a few shapes, falling back to eager), then the model is compiled with
    dynamic=False for this one input shape; the first call compiles (`first_call_s`), `graphs_compiled`
    counts the graphs it compiled and `recompiles_while_timed` the graphs compiled after it (0: no
    timed call compiled). A missing kernel or a failing compiler is recorded as the status
    ("unsupported" | "failed") with the error's first line, not raised: it is the answer for this case.
    """
    settings = request.settings
    device = torch.device(settings["device"])
    dtype = PRECISIONS[settings["precision"]]
    compiled = settings["compile"] != "none"
    batch = int(settings["batch"])
    outcome: dict[str, Any] = {"status": "ok", "note": ""}
    try:
        layout = memory_format(settings["channels_last"])
        model = fresh_model(settings).to(device=device, dtype=dtype, memory_format=layout).eval()
        images = random_images(batch, device, dtype, settings["channels_last"])
        if compiled:
            from torch import _dynamo

            _dynamo.reset()
            forward = torch.compile(model, mode=settings["compile"], dynamic=False)
        else:
            forward = model
        with torch.no_grad():
            before = compiled_graphs()
            with Stopwatch(device) as first:
                forward(images)
            after_first = compiled_graphs()
            seconds = timed_calls(
                lambda: forward(images),
                device,
                int(settings["max_runs"]),
                int(settings["warmup"]),
                float(settings["budget_s"]),
            )
            after_timing = compiled_graphs()
    except Exception as error:  # a missing kernel, a compiler error: recorded as this case's answer
        record.log_results(status=classify_error(error), note=short_error(error))
        return
    summary = summarize(seconds)
    outcome.update(
        **summary.ms(),
        images_per_s=batch / summary.median,
        relative_spread=summary.relative_spread,
        noisy=summary.noisy,
        first_call_s=first.seconds,
        graphs_compiled=_difference(after_first, before) if compiled else 0,
        recompiles_while_timed=_difference(after_timing, after_first) if compiled else 0,
        threads=torch.get_num_threads(),
    )
    record.log_results(**outcome)


def work_inference_timing(request: Request) -> tuple[Work, ...]:
    """Forward calls in images (a batch of B counted as B single-image calls) and the compile, if any."""
    settings = request.settings
    calls = int(settings["batch"]) * (1 + int(settings["warmup"]) + int(settings["max_runs"]))
    return (
        Work(
            model=str(settings["model"]),
            device=str(settings["device"]),
            precision=str(settings["precision"]),
            width=float(settings.get("width", 1.0)),
            calls=calls,
            compiles=() if settings["compile"] == "none" else (str(settings["compile"]),),
        ),
    )


# --- each layer alone -------------------------------------------------------------------------------


def conv_kind(module: nn.Module) -> str:
    """depthwise (one filter per channel) | pointwise (1x1) | dense (k x k over all channels) | linear."""
    if isinstance(module, nn.Linear):
        return "linear"
    if module.groups > 1 and module.groups == module.in_channels:
        return "depthwise"
    if tuple(module.kernel_size) == (1, 1):
        return "pointwise"
    return "dense"


def layer_inputs(model: nn.Module, images: torch.Tensor) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Each convolution and linear layer of `model` (by name) with the input it gets on `images`."""
    captured: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: captured.__setitem__(name, (m, args[0].detach())))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def measure_layer_profile(request: Request, record) -> None:
    """Each convolution and the classifier run alone: a table "layers" and per-kind counts in the results.

    bytes = (input + output + weight elements) x element size, the least a layer must move; MACs / byte
    is its arithmetic intensity. A depthwise 3x3 does 9 MACs per output element whatever the channel
    count, so its intensity is tiny and it runs at memory speed, far below the MAC rate a 1x1 conv or
    a dense 3x3 over many channels reaches.
    """
    import pandas as pd
    from torch.utils.flop_counter import FlopCounterMode

    settings = request.settings
    device = torch.device(settings["device"])
    channels_last = bool(settings["channels_last"])
    model = fresh_model(settings).to(device=device, memory_format=memory_format(channels_last)).eval()
    images = random_images(int(settings["batch"]), device, torch.float32, channels_last)
    rows = []
    with torch.no_grad():
        for name, (layer, inputs) in layer_inputs(model, images).items():
            with FlopCounterMode(display=False) as counter:
                outputs = layer(inputs)
            macs = counter.get_total_flops() // 2  # a multiply-add is 2 FLOPs to the counter
            moved = (inputs.numel() + outputs.numel() + layer.weight.numel()) * inputs.element_size()
            seconds = time_calls(
                lambda layer=layer, inputs=inputs: layer(inputs),
                device,
                int(settings["warmup"]),
                int(settings["max_runs"]),
            )
            median = summarize(seconds).median
            rows.append(
                {
                    "layer": name,
                    "kind": conv_kind(layer),
                    "macs": int(macs),
                    "bytes": int(moved),
                    "macs_per_byte": macs / moved,
                    "median_ms": 1e3 * median,
                    "gmacs_per_s": macs / median / 1e9,
                }
            )
    table = pd.DataFrame(rows)
    record.save_table("layers", table)
    kinds = table["kind"].value_counts()
    record.log_results(
        layers=int(len(table)),
        convolutions=int((table["kind"] != "linear").sum()),
        depthwise_convolutions=int(kinds.get("depthwise", 0)),
        pointwise_convolutions=int(kinds.get("pointwise", 0)),
        dense_convolutions=int(kinds.get("dense", 0)),
        layer_ms_total=float(table["median_ms"].sum()),
        macs_total=int(table["macs"].sum()),
        threads=torch.get_num_threads(),
    )


def work_layer_profile(request: Request) -> tuple[Work, ...]:
    settings = request.settings
    model = str(settings["model"])
    # Every layer run 1 + warmup + max_runs times is as much work as that many forwards, plus the capturing one.
    calls = int(settings["batch"]) * (2 + int(settings["warmup"]) + int(settings["max_runs"]))
    return (Work(model=model, device=str(settings["device"]), width=float(settings.get("width", 1.0)), calls=calls),)


# --- how busy the device is ----------------------------------------------------------------------------


def union_length(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """The length of the union of `intervals`, clipped to [start, end] (nested and overlapping ones count once)."""
    total, reached = 0.0, start
    for low, high in sorted((max(a, start), min(b, end)) for a, b in intervals):
        if high <= max(low, reached):  # outside the window, or already counted
            continue
        total += high - max(low, reached)
        reached = high
    return total


def _step(model: nn.Module, images: torch.Tensor, mode: str) -> Callable[[], object]:
    if mode == "inference":
        model.eval()

        def infer():
            with torch.no_grad():
                return model(images)

        return infer
    model.train()
    targets = torch.zeros(len(images), dtype=torch.long, device=images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), targets).backward()
        optimizer.step()

    return train


def busy_intervals(events, device_type: str) -> tuple[list[tuple[float, float]], int, int]:
    """(busy intervals in µs, operators, kernels) of profiler events: on a GPU the device's kernels and
    copies, on the CPU the ATen operators; operators are the top-level ATen calls, kernels the GPU's."""
    from torch.autograd import DeviceType

    def is_operator(event) -> bool:
        return event.device_type == DeviceType.CPU and not event.is_async and event.name.startswith("aten::")

    operators = [event for event in events if is_operator(event)]
    top = [event for event in operators if event.cpu_parent is None or not is_operator(event.cpu_parent)]
    kernels = [event for event in events if event.device_type == DeviceType.CUDA]
    busy = kernels if device_type == "cuda" else top
    return [(event.time_range.start, event.time_range.end) for event in busy], len(top), len(kernels)


def measure_device_busy(request: Request, record) -> None:
    """Profile `steps` steps after `warmup` ones: the wall time of the steps (a profiler range around them,
    the device synchronised at both ends), the union of the device's busy intervals inside it, their
    ratio, and the operators (and GPU kernels) per step."""
    from torch.profiler import ProfilerActivity, profile, record_function

    settings = request.settings
    device = torch.device(settings["device"])
    channels_last = bool(settings["channels_last"])
    model = fresh_model(settings).to(device=device, memory_format=memory_format(channels_last))
    images = random_images(int(settings["batch"]), device, torch.float32, channels_last)
    step = _step(model, images, settings["mode"])
    for _ in range(int(settings["warmup"])):
        step()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = int(settings["steps"])
    with profile(activities=activities) as profiler:
        with record_function(WINDOW):
            for _ in range(steps):
                step()
            synchronize(device)
    events = profiler.events()
    window = next(event for event in events if event.name == WINDOW)
    start, end = window.time_range.start, window.time_range.end
    intervals, operators, kernels = busy_intervals(events, device.type)
    busy = union_length(intervals, start, end)
    wall = end - start
    record.log_results(
        wall_ms_per_step=wall / steps / 1e3,
        busy_ms_per_step=busy / steps / 1e3,
        busy_fraction=busy / wall if wall > 0 else float("nan"),
        busy_means="GPU kernels and copies running" if device.type == "cuda" else "inside ATen operators on the host",
        operators_per_step=operators / steps,
        kernels_per_step=kernels / steps if device.type == "cuda" else None,
        threads=torch.get_num_threads(),
    )


def work_device_busy(request: Request) -> tuple[Work, ...]:
    settings = request.settings
    steps = int(settings["steps"]) + int(settings["warmup"])
    common = {
        "model": str(settings["model"]),
        "device": str(settings["device"]),
        "width": float(settings.get("width", 1.0)),
    }
    if settings["mode"] == "training":
        batch = int(settings["batch"])
        return (Work(**common, epochs=1.0, images=steps * batch, batch=batch, engine="fast"),)
    return (Work(**common, calls=steps * int(settings["batch"])),)
