"""E2: what a model costs (parameters, MACs) against what it takes (measured time).

MACs are counted by lablib.core.model.count_macs (FlopCounterMode: a multiply-add
is 2 FLOPs there, so MACs = FLOPs / 2; only convolutions and matrix products
are counted, BatchNorm and activations are not). Every time goes through
lablib.core.timing (time_calls / Stopwatch), which synchronises a GPU around each
timed call. Inference is timed in eval mode under no_grad, with the model and
input cast to the precision (true fp16/bf16, not autocast), so an operator
without a kernel for that dtype shows up as "unsupported" instead of being
silently run in fp32. The section's sentences (`accuracy_sentence`,
`measurement_sentence`, `findings_lines`) judge each claim against the numbers.
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
from lablib.core.model import IMAGE_SHAPE, count_macs, count_parameters, resnet18
from lablib.core.timing import Stopwatch, time_calls

# Inference dtypes E2 times (model and input cast to them); training precisions are lablib.core.config.PRECISIONS.
INFERENCE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# A measured speed-up below this share of the MAC ratio is "far less than the MAC ratio" in the narrative.
FAR_BELOW_MAC_RATIO = 0.5


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


def widest_mobilenet(specs: Iterable[ModelSpec]) -> ModelSpec:
    """The MobileNetV2 with the largest width multiplier (E2.4 profiles and compares it)."""
    mobilenets = [spec for spec in specs if spec.family == "mobilenetv2"]
    if not mobilenets:
        raise ConfigError("no MobileNetV2 among the models; give at least one width, e.g. widths='0.5'.")
    return max(mobilenets, key=lambda spec: spec.width)


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
    unknown = [p for p in values if p not in INFERENCE_DTYPES]
    if unknown:
        raise ConfigError(f"precisions={text!r}: unknown {unknown}; valid: {', '.join(INFERENCE_DTYPES)}.")
    return values


# --- what a model costs -----------------------------------------------------------


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
    inputs = torch.randn(batch, *IMAGE_SHAPE, device=device).to(parameter.dtype)
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


def ready_for_timing(
    spec_or_model: ModelSpec | nn.Module, device: torch.device, precision: str, compiled: bool
) -> nn.Module:
    """The model on `device`, cast to `precision`, in eval mode, compiled when asked.

    torch._dynamo is reset first: every model instance shares the class's
    forward code, and after 8 recompilations Dynamo would silently fall back
    to eager.
    """
    model = spec_or_model.build() if isinstance(spec_or_model, ModelSpec) else spec_or_model
    model = model.to(device=device, dtype=INFERENCE_DTYPES[precision]).eval()
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
            model = ready_for_timing(copy.deepcopy(models[label]), device, precision, mode == "compiled")
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
            model(torch.randn(batch, *IMAGE_SHAPE, device=device, dtype=parameter.dtype))
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


def comparison_facts(
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


# --- the sentences of E2 ----------------------------------------------------------------


def _number(value: float, digits: int = 2) -> str:
    return "not measured" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def accuracy_sentence(accuracy: pd.DataFrame, epochs: int, train_images: int, device: str) -> str:
    """E2.2: each model's test accuracy and epoch time (train_models' rows)."""
    parts = [
        f"`{row['model']}` "
        + ("diverged (no test accuracy)" if row["diverged"] else f"{row['test_accuracy']:.2f} % test accuracy")
        + f" ({row['epoch_s']:.1f} s per epoch on `{device}`)"
        for row in accuracy.to_dict("records")
    ]
    return f"**E2.2:** after {epochs} epoch(s) on {train_images:,} images: " + "; ".join(parts) + "."


def measurement_sentence(timings: pd.DataFrame, devices: Iterable[torch.device], use_compile: bool) -> str:
    """E2.3: how many measurements ran, which did not and why, and what was left out."""
    not_ok = timings[timings["status"] != "ok"]
    text = f"**E2.3:** {len(timings) - len(not_ok)} of {len(timings)} measurements ran"
    if len(not_ok):
        text += "; not measured: " + "; ".join(
            f"`{r['model']}` {r['device']} {r['precision']} {r['mode']} batch {r['batch']}: {r['status']} ({r['note']})"
            for r in not_ok.to_dict("records")
        )
    text += "."
    if not any(device.type == "cuda" for device in devices):
        text += " No GPU is visible: GPU timings were not measured."
    if not use_compile:
        text += " Compilation was skipped (use_compile False)."
    return text


def findings_lines(
    facts: dict, speedups: pd.DataFrame, profile_device: str, layer_batch: int, throughput_batch: int
) -> list[str]:
    """E2.4: why fewer MACs need not mean faster, from `comparison_facts` and `precision_speedups`, as Markdown lines.

    Each claim is checked against the numbers: the speed-up is called "far less than the MAC ratio" below
    FAR_BELOW_MAC_RATIO of it, depthwise layers are called memory-bound only when they ran slower per MAC
    than the 1x1 convolutions, and the launch-cost argument only when the advantage is smaller at batch 1.
    """
    reference, other = facts["reference"], facts["other"]
    lines = [
        f"**E2.4:** `{other}` needs {facts['mac_ratio']:.1f}× fewer MACs and {facts['parameter_ratio']:.1f}× fewer "
        f"parameters than `{reference}`. Measured in fp32, eager:"
    ]
    for device, entry in facts["devices"].items():
        batch1, large = entry.get("speedup_batch1", math.nan), entry.get("speedup_batch", math.nan)
        if not (math.isfinite(batch1) or math.isfinite(large)):
            lines.append(f"- on `{device}`: not measured in fp32, eager.")
            continue
        far_below = max(_finite_or(batch1), _finite_or(large)) < FAR_BELOW_MAC_RATIO * facts["mac_ratio"]
        lines.append(
            f"- on `{device}`: it is {_number(batch1)}× as fast at batch 1 and {_number(large)}× as fast at batch "
            f"{throughput_batch}"
            + (" (far less than the MAC ratio)" if far_below else "")
            + f"; `{reference}` sustains {_number(entry.get('reference_gmacs_per_s', math.nan), 1)} GMAC/s, "
            f"`{other}` {_number(entry.get('other_gmacs_per_s', math.nan), 1)} GMAC/s."
        )
    depthwise, pointwise = facts.get("depthwise_gmacs_per_s", math.nan), facts.get("pointwise_gmacs_per_s", math.nan)
    if math.isfinite(depthwise) and math.isfinite(pointwise):
        judged = (
            "so they are memory-bound: they wait on memory, not on arithmetic units, and run slower per MAC."
            if depthwise < pointwise
            else "so they should be memory-bound, but in this run they did not run slower per MAC than the 1×1 "
            "convolutions (small batch or a busy machine: the claim is not confirmed by these numbers)."
        )
        lines.append(
            f"- **Depthwise convolutions:** in `{other}` they do {facts['depthwise_mac_share']:.1f} % of the MACs and "
            f"take {facts['depthwise_time_share']:.1f} % of the layer time on `{profile_device}` (batch "
            f"{layer_batch}), at {depthwise:.2f} GMAC/s against {pointwise:.2f} GMAC/s for the 1×1 convolutions. "
            f"They do {facts['depthwise_macs_per_byte']:.2f} MACs per byte moved (1×1: "
            f"{facts['pointwise_macs_per_byte']:.2f}), " + judged
        )
    smaller_at_batch1 = any(
        _finite_or(entry.get("speedup_batch1", math.nan)) < _finite_or(entry.get("speedup_batch", math.nan))
        for entry in facts["devices"].values()
    )
    lines.append(
        f"- **More, smaller kernels:** `{other}` has {facts['other_convs']} convolutions averaging "
        f"{facts['other_macs_per_conv'] / 1e6:.2f} MMACs each, `{reference}` {facts['reference_convs']} averaging "
        f"{facts['reference_macs_per_conv'] / 1e6:.1f} MMACs: each launch (plus its BatchNorm and activation) has a "
        "fixed cost that small layers cannot amortise, which should hurt most at batch 1"
        + (
            " (as here: its advantage is smaller at batch 1 than at the large batch)."
            if smaller_at_batch1
            else " (not visible in this run: its advantage is not smaller at batch 1)."
        )
    )
    relative = "; ".join(
        f"`{r['model']}` {r['device']} {r['mode']} {r['precision']} "
        + (f"{r['speedup_vs_fp32']:.2f}×" if r["status"] == "ok" else r["status"])
        for r in speedups.to_dict("records")
    )
    relative = relative or "nothing but fp32 was timed"
    lines.append(
        f"- **Precision support per op:** relative to fp32 at batch {throughput_batch}: {relative}. "
        "A speed-up needs kernels for that dtype on that device (tensor cores for fp16/bf16 on a GPU, AVX-512 "
        "BF16/AMX for bf16 on a CPU); without them the low precision is emulated or falls back to slow paths."
    )
    return lines


def _finite_or(value: float, default: float = 0.0) -> float:
    return value if value is not None and math.isfinite(value) else default
