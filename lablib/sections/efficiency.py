"""E2: what a model costs (parameters, MACs) against what it takes (measured time).

MACs are counted by torch.utils.flop_counter.FlopCounterMode (a multiply-add
is 2 FLOPs there, so MACs = FLOPs / 2; only convolutions and matrix products
are counted, BatchNorm and activations are not). Every time goes through
lablib.core.timing (time_calls / Stopwatch), which synchronises a GPU around each
timed call. Inference is timed in eval mode under no_grad, with the model and
input cast to the precision (true fp16/bf16, not autocast), so an operator
without a kernel for that dtype shows up as "unsupported" instead of being
silently run in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from lablib.core.errors import ConfigError
from lablib.core.mobilenet import mobilenet_v2
from lablib.core.model import count_parameters, resnet18
from lablib.core.timing import Stopwatch, time_calls

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INPUT_SHAPE = (3, 32, 32)  # C x H x W of a CIFAR-10 image


# --- which models ---------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    label: str  # "resnet18", "mobilenetv2-0.5"
    family: str  # "resnet18" | "mobilenetv2"
    width: float  # width multiplier (1.0 for ResNet-18)

    def build(self, num_classes: int = 10) -> nn.Module:
        if self.family == "resnet18":
            return resnet18(num_classes)
        return mobilenet_v2(num_classes, self.width)


def parse_list(text: str, kind: Callable = str, name: str = "list") -> list:
    """ "0.5, 1.0" -> [0.5, 1.0]; an empty item or a bad number is a ConfigError naming it."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name}={text!r} is empty; give comma-separated values, e.g. '0.5,1.0'.")
    try:
        return [kind(item) for item in items]
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a comma-separated list of {kind.__name__}.") from None


def model_specs(widths: str | Iterable[float] = "0.5,1.0", resnet: bool = True) -> list[ModelSpec]:
    """ResNet-18 (when `resnet`) and one MobileNetV2 per width multiplier."""
    # papermill turns "-p widths 0.5" into a float, so a single number is accepted too
    single = isinstance(widths, (str, int, float))
    values = parse_list(str(widths), float, "widths") if single else [float(w) for w in widths]
    bad = [w for w in values if not w > 0]
    if bad:
        raise ConfigError(f"widths={values!r}: width multipliers must be > 0 (got {bad}).")
    specs = [ModelSpec("resnet18", "resnet18", 1.0)] if resnet else []
    return specs + [ModelSpec(f"mobilenetv2-{w:g}", "mobilenetv2", float(w)) for w in values]


def parse_precisions(text: str) -> list[str]:
    values = [p.lower() for p in parse_list(text, str, "precisions")]
    unknown = [p for p in values if p not in PRECISIONS]
    if unknown:
        raise ConfigError(f"precisions={text!r}: unknown {unknown}; valid: {', '.join(PRECISIONS)}.")
    return values


# --- what a model costs -----------------------------------------------------------


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, *INPUT_SHAPE)) -> int:
    """Multiply-accumulates of one forward pass on a zero input, counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    inputs = torch.zeros(input_shape, dtype=parameter.dtype, device=parameter.device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    model.train(was_training)
    return counter.get_total_flops() // 2


def conv_kind(module: nn.Module) -> str:
    """depthwise | pointwise (1x1) | dense (k x k) | linear."""
    if isinstance(module, nn.Linear):
        return "linear"
    if module.groups > 1 and module.groups == module.in_channels:
        return "depthwise"
    if tuple(module.kernel_size) == (1, 1):
        return "pointwise"
    return "dense"


def describe(spec: ModelSpec, num_classes: int = 10) -> dict:
    """Parameters, MACs per image and layer counts of one model."""
    model = spec.build(num_classes)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    macs = count_macs(model)
    return {
        "model": spec.label,
        "family": spec.family,
        "width": spec.width,
        "parameters": count_parameters(model),
        "macs": macs,
        "convs": len(convs),
        "depthwise_convs": sum(conv_kind(m) == "depthwise" for m in convs),
        "layers": sum(1 for m in model.modules() if len(list(m.children())) == 0),  # leaf modules
        "macs_per_conv": macs / max(1, len(convs)),
    }


def describe_models(specs: Iterable[ModelSpec], num_classes: int = 10) -> pd.DataFrame:
    return pd.DataFrame([describe(spec, num_classes) for spec in specs])


# --- what it takes: measured time ---------------------------------------------------


@dataclass(frozen=True)
class Timing:
    model: str
    device: str  # cpu | cuda
    precision: str  # fp32 | fp16 | bf16
    mode: str  # eager | compiled
    batch: int  # images per call
    status: str  # ok | unsupported | failed | skipped
    runs: int = 0  # timed calls
    median_ms: float = math.nan  # per call
    p10_ms: float = math.nan
    p90_ms: float = math.nan
    images_per_s: float = math.nan  # batch / median
    first_call_s: float = math.nan  # the first call (compilation included when compiled)
    note: str = ""  # the error message of an unsupported/failed measurement

    def to_dict(self) -> dict:
        return asdict(self)


def classify_error(error: BaseException) -> str:
    """ "unsupported" when a kernel does not exist for the dtype/device, else "failed"."""
    text = str(error)
    markers = ("not implemented for", "not supported", "Unsupported", "no kernel", "does not support")
    return "unsupported" if any(marker in text for marker in markers) else "failed"


def _short(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def _percentile(values: list[float], q: float) -> float:
    return float(torch.tensor(values, dtype=torch.float64).quantile(q))


def measure(
    model: nn.Module,
    device: torch.device,
    batch: int,
    warmup: int = 3,
    runs: int = 20,
    budget_s: float = 10.0,
    label: str = "",
    precision: str = "fp32",
    mode: str = "eager",
) -> Timing:
    """Time `model` on a random batch: a first call, warm-up calls, then timed calls.

    `model` must already be on `device` in `precision` (and compiled, for
    mode "compiled"). The first call (compilation included) is timed apart;
    the second call is the first timed sample and sets the pace: warm-up and
    timed runs are cut so that each takes about `budget_s` seconds, and a call
    slower than `budget_s` (fp16 convolutions on a CPU) is timed once. A slow
    case costs seconds, not minutes.
    """
    parameter = next(model.parameters())
    inputs = torch.randn(batch, *INPUT_SHAPE, device=device).to(parameter.dtype)
    common = dict(model=label, device=device.type, precision=precision, mode=mode, batch=batch)
    model.eval()
    try:
        with torch.no_grad():
            with Stopwatch(device) as first:
                model(inputs)
            times = time_calls(lambda: model(inputs), device, warmup=0, runs=1)
            affordable = int(budget_s / max(times[0], 1e-9))  # calls that fit in the budget
            if affordable >= 1 and runs > 1:
                times += time_calls(
                    lambda: model(inputs),
                    device,
                    warmup=min(max(0, warmup - 2), affordable),
                    runs=min(runs - 1, affordable),
                )
    except Exception as error:  # a missing kernel, a compiler error: recorded, not raised
        return Timing(**common, status=classify_error(error), note=_short(error))
    median = _percentile(times, 0.5)
    return Timing(
        **common,
        status="ok",
        runs=len(times),
        median_ms=1e3 * median,
        p10_ms=1e3 * _percentile(times, 0.1),
        p90_ms=1e3 * _percentile(times, 0.9),
        images_per_s=batch / median,
        first_call_s=first.seconds,
    )


def prepare(spec_or_model: ModelSpec | nn.Module, device: torch.device, precision: str, compiled: bool) -> nn.Module:
    """The model on `device`, cast to `precision`, in eval mode, compiled when asked.

    torch._dynamo is reset first: every model instance shares the class's
    forward code, and after 8 recompilations Dynamo would silently fall back
    to eager.
    """
    model = spec_or_model.build() if isinstance(spec_or_model, ModelSpec) else spec_or_model
    model = model.to(device=device, dtype=PRECISIONS[precision]).eval()
    if compiled:
        torch._dynamo.reset()
        model = torch.compile(model)
    return model


def time_models(
    models: dict[str, nn.Module],
    devices: Iterable[torch.device],
    precisions: Iterable[str],
    compile: bool = True,
    latency_runs: int = 30,
    throughput_batch: int = 256,
    throughput_runs: int = 10,
    warmup: int = 3,
    budget_s: float = 10.0,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per model x device x precision x mode x batch (1 and `throughput_batch`).

    `models` maps a label to a trained (or fresh) fp32 module; each
    measurement uses a copy, so the originals are left as they are.
    """
    import copy

    from tqdm import tqdm

    modes = ["eager", "compiled"] if compile else ["eager"]
    jobs = [
        (label, device, precision, mode)
        for label in models
        for device in devices
        for precision in precisions
        for mode in modes
    ]
    rows = []
    for label, device, precision, mode in tqdm(jobs, desc="timing", disable=not progress):
        common = dict(label=label, precision=precision, mode=mode)
        try:
            model = prepare(copy.deepcopy(models[label]), device, precision, mode == "compiled")
        except Exception as error:
            for batch in (1, throughput_batch):
                rows.append(
                    Timing(
                        label, device.type, precision, mode, batch, classify_error(error), note=_short(error)
                    ).to_dict()
                )
            continue
        rows.append(measure(model, device, 1, warmup, latency_runs, budget_s, **common).to_dict())
        rows.append(measure(model, device, throughput_batch, warmup, throughput_runs, budget_s, **common).to_dict())
        del model
    return pd.DataFrame(rows)


def timing_devices(time_cpu: bool = True) -> list[torch.device]:
    """The devices to time on: the GPU when one is visible, and the CPU when `time_cpu`
    (always on a machine without a GPU, so there is something to measure)."""
    from lablib.core.train import resolve_device

    devices = [resolve_device("cuda")] if torch.cuda.is_available() else []
    if time_cpu or not devices:
        devices.insert(0, torch.device("cpu"))
    return devices


def with_macs(timings: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """The successful timings with the model's GMACs, time per image and a "where" label."""
    ok = timings[timings["status"] == "ok"].merge(models[["model", "macs", "parameters"]], on="model")
    ok["gmacs"] = ok["macs"] / 1e9
    ok["ms_per_image"] = ok["median_ms"] / ok["batch"]
    ok["where"] = ok["device"] + " " + ok["mode"]
    return ok


# --- why fewer MACs need not mean faster ---------------------------------------------


def layer_profile(
    model: nn.Module, device: torch.device, batch: int = 64, warmup: int = 2, runs: int = 5
) -> pd.DataFrame:
    """Each conv/linear layer run alone on its real input: MACs, bytes moved, time.

    bytes = (input + output + weight elements) x element size, the least a
    layer must move; MACs / byte is its arithmetic intensity. A depthwise 3x3
    does 9 MACs per output element whatever the channel count, so its
    intensity is tiny and it runs at memory speed, far below the MAC rate a
    dense or 1x1 conv reaches.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to(device).eval()
    captured: dict[str, torch.Tensor] = {}
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    hooks = [
        m.register_forward_pre_hook(lambda m, args, name=name: captured.__setitem__(name, args[0].detach()))
        for name, m in layers.items()
    ]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.randn(batch, *INPUT_SHAPE, device=device, dtype=parameter.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    rows = []
    with torch.no_grad():
        for name, layer in layers.items():
            inputs = captured[name]
            with FlopCounterMode(display=False) as counter:
                outputs = layer(inputs)
            size = inputs.element_size()
            moved = (inputs.numel() + outputs.numel() + layer.weight.numel()) * size
            seconds = time_calls(lambda layer=layer, inputs=inputs: layer(inputs), device, warmup, runs)
            median = _percentile(seconds, 0.5)
            macs = counter.get_total_flops() // 2
            rows.append(
                {
                    "layer": name,
                    "kind": conv_kind(layer),
                    "macs": macs,
                    "bytes": moved,
                    "macs_per_byte": macs / moved,
                    "median_ms": 1e3 * median,
                    "gmacs_per_s": macs / median / 1e9,
                }
            )
    return pd.DataFrame(rows)


def kind_summary(layers: pd.DataFrame) -> pd.DataFrame:
    """Per layer kind: count, share of MACs, share of time, achieved GMAC/s, MACs per byte."""
    grouped = layers.groupby("kind").agg(
        layers=("layer", "count"), macs=("macs", "sum"), bytes=("bytes", "sum"), ms=("median_ms", "sum")
    )
    grouped["mac_share"] = 100 * grouped["macs"] / grouped["macs"].sum()
    grouped["time_share"] = 100 * grouped["ms"] / grouped["ms"].sum()
    grouped["gmacs_per_s"] = grouped["macs"] / (grouped["ms"] / 1e3) / 1e9
    grouped["macs_per_byte"] = grouped["macs"] / grouped["bytes"]
    return grouped.reset_index()


def compare(models: pd.DataFrame, timings: pd.DataFrame, reference: str, other: str) -> pd.DataFrame:
    """Per device x precision x mode x batch: how many times fewer MACs `other` needs than
    `reference`, how many times faster it measured, and each one's achieved GMAC/s."""
    macs = models.set_index("model")["macs"]
    ok = timings[timings["status"] == "ok"]
    keys = ["device", "precision", "mode", "batch"]
    left = ok[ok["model"] == reference].set_index(keys)["median_ms"]
    right = ok[ok["model"] == other].set_index(keys)["median_ms"]
    both = pd.concat({"reference_ms": left, "other_ms": right}, axis=1).dropna().reset_index()
    both["mac_ratio"] = macs[reference] / macs[other]
    both["speedup"] = both["reference_ms"] / both["other_ms"]
    batch = both["batch"]
    both["reference_gmacs_per_s"] = macs[reference] * batch / (both["reference_ms"] / 1e3) / 1e9
    both["other_gmacs_per_s"] = macs[other] * batch / (both["other_ms"] / 1e3) / 1e9
    return both


def findings(
    models: pd.DataFrame, timings: pd.DataFrame, kinds: pd.DataFrame, reference: str, other: str, batch: int
) -> dict:
    """The numbers E2's explanation quotes, all from the tables above.

    mac_ratio: reference MACs / other MACs; per device (fp32, eager) the
    measured speed-up of `other` at batch 1 and at `batch`, and both models'
    achieved GMAC/s at `batch`; the depthwise layers' share of MACs and of
    time, their GMAC/s and MACs per byte against the 1x1 and dense convs;
    conv counts and MACs per conv.
    """
    table = models.set_index("model")
    facts: dict = {
        "reference": reference,
        "other": other,
        "mac_ratio": float(table.loc[reference, "macs"] / table.loc[other, "macs"]),
        "parameter_ratio": float(table.loc[reference, "parameters"] / table.loc[other, "parameters"]),
        "reference_convs": int(table.loc[reference, "convs"]),
        "other_convs": int(table.loc[other, "convs"]),
        "reference_macs_per_conv": float(table.loc[reference, "macs_per_conv"]),
        "other_macs_per_conv": float(table.loc[other, "macs_per_conv"]),
        "devices": {},
    }
    both = compare(models, timings, reference, other)
    both = both[(both["precision"] == "fp32") & (both["mode"] == "eager")]
    for device, rows in both.groupby("device"):
        by_batch = rows.set_index("batch")
        entry = {}
        if 1 in by_batch.index:
            entry["speedup_batch1"] = float(by_batch.loc[1, "speedup"])
        if batch in by_batch.index:
            entry["speedup_batch"] = float(by_batch.loc[batch, "speedup"])
            entry["reference_gmacs_per_s"] = float(by_batch.loc[batch, "reference_gmacs_per_s"])
            entry["other_gmacs_per_s"] = float(by_batch.loc[batch, "other_gmacs_per_s"])
        facts["devices"][device] = entry
    by_kind = kinds.set_index("kind")
    for kind in ("depthwise", "pointwise", "dense"):
        if kind in by_kind.index:
            for column in ("mac_share", "time_share", "gmacs_per_s", "macs_per_byte"):
                facts[f"{kind}_{column}"] = float(by_kind.loc[kind, column])
    return facts


def precision_speedups(timings: pd.DataFrame, batch: int) -> pd.DataFrame:
    """fp16/bf16 time against fp32 (same model, device, mode, batch); >1 = faster than fp32.

    Unsupported or failed cases keep their status instead of a number.
    """
    rows = timings[timings["batch"] == batch]
    keys = ["model", "device", "mode"]
    base = rows[(rows["precision"] == "fp32") & (rows["status"] == "ok")].set_index(keys)["median_ms"]
    out = []
    for row in rows[rows["precision"] != "fp32"].to_dict("records"):
        reference = base.get(tuple(row[k] for k in keys), math.nan)
        speedup = reference / row["median_ms"] if row["status"] == "ok" else math.nan
        out.append(
            {
                **{k: row[k] for k in keys},
                "precision": row["precision"],
                "status": row["status"],
                "speedup_vs_fp32": speedup,
            }
        )
    return pd.DataFrame(out, columns=keys + ["precision", "status", "speedup_vs_fp32"])


# --- accuracy after the profile's epochs -----------------------------------------------


def train_models(
    specs: Iterable[ModelSpec], config, data, progress: bool = True
) -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """Train each model with the run's settings; return the trained modules and one row each.

    Rows: final training loss/accuracy, test accuracy, mean epoch time and
    whether the loss diverged (then there is no test accuracy).
    """
    from lablib.core.train import train

    models, rows = {}, []
    for spec in specs:
        result = train(config, model=spec.build(len(data.classes)), data=data, evaluate_test=True, progress=progress)
        last = result.epochs[-1]
        models[spec.label] = result.model.cpu()
        rows.append(
            {
                "model": spec.label,
                "epochs": len(result.epochs),
                "train_loss": last.loss,
                "train_accuracy": last.accuracy,
                "test_accuracy": result.test.accuracy if result.test else math.nan,
                "epoch_s": sum(e.total_s for e in result.epochs) / len(result.epochs),
                "diverged": result.diverged,
            }
        )
    return models, pd.DataFrame(rows)
