"""E2 (efficient blocks): MobileNetV2's inverted residuals beside ResNet-18, the efficient-ML lab's three
questions (Lab 3) answered from measurements.

    1. the inverted-residual / linear-bottleneck block, shown from the module itself;
    2. MobileNetV2 within a MAC budget: a search over its width multiplier, each width's parameters and
       MACs counted, its test accuracy trained and its latency timed, against ResNet-18's;
    3. why fewer MACs need not mean faster (the sentences are lablib.sections.speed's).

`e2_plan(params)` lists every measurement (lablib.core.store) the notebook's parameters call for:
- "counts" (lablib.core.counts): parameters and MACs of ResNet-18 and of each width;
- "training" (lablib.core.training, fast engine, `save_weights` off): ResNet-18 and each width, the
  engine's precision on this device (bf16 on a GPU that has it, else fp32), eager; and for ResNet-18
  and the compared MobileNetV2 (`compare_width`) one training per precision of `precisions` the device
  has the arithmetic for (lablib.core.inference.precision_support);
- "inference_timing" (lablib.core.inference): every network in fp32, eager, at batch 1 (latency) and
  `throughput_batch` (throughput); the compared pair in each precision, eager and (`use_compile`)
  compiled; on the device and, on a GPU machine with `time_cpu`, on the CPU too (compiled CPU timings
  not with LABLIB_NO_CPU_COMPILE=1);
- "layer_profile": each convolution of the pair alone, at `layer_batch`;
- "device_busy": busy / wall time of the pair, inference and training, at batch 1 and `throughput_batch`.
The list depends on the parameters and the machine only (never on results), so the dry run knows it.
`gather(plan, measured)` turns the measurements into the frames the tables and sentences read.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from torch import nn

from lablib.core.config import config_from_params
from lablib.core.counts import counts_request
from lablib.core.errors import ConfigError
from lablib.core.inference import (
    PRECISIONS,
    device_busy_request,
    layer_profile_request,
    precision_support,
    timing_request,
)
from lablib.core.progress import counted
from lablib.core.store import Measured, Request
from lablib.core.switches import NO_CPU_COMPILE, switches
from lablib.core.training import resolve_device_type, training_request
from lablib.sections.headlines import Headline, answer, latest, missing, number, shown
from lablib.sections.points import row as point_row
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.speed import (
    Skipped,
    mac_speed_sentence,
    noise_sentence,
    pair_speeds,
    skipped_notes,
    speed_ratio,
    timing_row,
)

SECTION = "e2_efficient_blocks"
REFERENCE = "ResNet-18"
DEFAULT_WIDTHS = "0.4,0.5,0.75,1.0,1.4,1.75"  # 22.6, 28.0, 59.3, 88.0, 170.1 and 259.8 M MACs at 32 x 32
DEFAULT_PRECISIONS = "fp32,fp16,bf16"
WITHIN_POINTS = 1.0  # "without accuracy reduction": test top-1 within this many points of ResNet-18's
NEAR_MACS = 30e6  # the lab report's small model: about 30 M MACs
NEAR_FACTOR = 1.5  # a width "near" NEAR_MACS: its MACs within this factor of it
NEAR_CHANCE_POINTS = 10.0  # accuracies within this many points of chance (100 / classes) rank nothing
MODES = ("inference", "training")
# The notebook's defaults for the parameters the plan reads (the notebook's parameters cell has the same).
DEFAULTS: dict[str, Any] = {
    "widths": DEFAULT_WIDTHS,
    "compare_width": 1.0,
    "precisions": DEFAULT_PRECISIONS,
    "use_compile": True,
    "time_cpu": True,
    "latency_runs": 50,
    "throughput_batch": 256,
    "throughput_runs": 10,
    "warmup": 5,
    "timing_s": 10.0,
    "layer_batch": 64,
    "busy_steps": 20,
}


def network_name(model: str, width: float = 1.0) -> str:
    """'ResNet-18' or 'MobileNetV2 ×0.5'."""
    return REFERENCE if model == "resnet18" else f"MobileNetV2 ×{float(width):g}"


def parse_widths(text: Any) -> list[float]:
    """'0.5, 1.0' -> [0.5, 1.0]; each width > 0, in the order given, without repeats."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        values = [float(item) for item in items]
    except ValueError:
        values = []
    if not values or any(not value > 0 for value in values):
        raise ConfigError(
            f"widths={text!r}: expected a comma-separated list of MobileNetV2 width multipliers > 0, "
            f"e.g. {DEFAULT_WIDTHS!r}."
        )
    return list(dict.fromkeys(values))


def parse_precisions(text: Any) -> list[str]:
    """'fp32,bf16' -> ['fp32', 'bf16']; fp32 (the reference every other precision is compared with) first."""
    names = [item.strip().lower() for item in str(text).split(",") if item.strip()]
    unknown = [name for name in names if name not in PRECISIONS]
    if unknown or "fp32" not in names:
        raise ConfigError(
            f"precisions={text!r}: expected a comma-separated list of {', '.join(PRECISIONS)} that includes fp32 "
            f"(the reference), e.g. {DEFAULT_PRECISIONS!r}."
        )
    return ["fp32"] + [name for name in dict.fromkeys(names) if name != "fp32"]


# --- what E2 measures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """E2's measurements by purpose, each as (network, request) (trainings: (network, precision, request))."""

    device: str  # where trainings, profiles and the main timings run (resolved)
    widths: tuple[float, ...]
    compared: str  # the MobileNetV2 compared with ResNet-18 in question 3
    large_batch: int  # the throughput batch
    layer_batch: int
    counts: tuple[tuple[str, Request], ...] = ()
    budget: tuple[tuple[str, Request], ...] = ()
    trainings: tuple[tuple[str, str, Request], ...] = ()
    timings: tuple[tuple[str, Request], ...] = ()
    layers: tuple[tuple[str, Request], ...] = ()
    busy: tuple[tuple[str, Request], ...] = ()
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def pair(self) -> tuple[str, str]:
        return (REFERENCE, self.compared)

    def requests(self) -> tuple[Request, ...]:
        """Every request once (a precision training may be a budget training itself), in the order shown."""
        groups = (self.counts, self.budget, self.trainings, self.timings, self.layers, self.busy)
        unique: dict[str, Request] = {}
        for group in groups:
            for item in group:
                unique.setdefault(item[-1].key, item[-1])
        return tuple(unique.values())

    def not_measured(self, what: str) -> list[str]:
        return [skip.sentence() for skip in self.skipped if skip.what == what]


def e2_plan(params: Mapping[str, Any]) -> Plan:
    """E2's measurements for the notebook's parameters (see the module's docstring)."""
    values = {**DEFAULTS, **dict(params)}
    config = config_from_params(values)
    device = resolve_device_type(config.device)
    widths = parse_widths(values["widths"])
    compare_width = float(values["compare_width"])
    if compare_width not in widths:
        raise ConfigError(
            f"compare_width={compare_width:g} is not one of widths={values['widths']!r}; give one of them (the "
            "MobileNetV2 that question 3 compares with ResNet-18)."
        )
    precisions = parse_precisions(values["precisions"])
    large, layer_batch = int(values["throughput_batch"]), int(values["layer_batch"])
    use_compile = bool(values["use_compile"])
    networks = [("resnet18", 1.0)] + [("mobilenet_v2", width) for width in widths]
    pair = [("resnet18", 1.0), ("mobilenet_v2", compare_width)]

    def training(model: str, width: float, precision: str | None = None) -> Request:
        # Eager: compiling each network and precision would cost a compile apiece and change neither the
        # accuracy nor the comparison of precisions; compile is measured on inference.
        return training_request(
            config,
            engine="fast",
            model=model,
            width=width,
            compile="none",
            precision=precision,
            save_weights=False,
        )

    skipped: list[Skipped] = []
    counts = tuple((network_name(m, w), counts_request(m, width=w)) for m, w in networks)
    budget = tuple((network_name(m, w), training(m, w)) for m, w in networks)
    trainings = []
    for precision in precisions:
        why = precision_support(device, precision)
        for model, width in pair:
            if why:
                skipped.append(Skipped("training", network_name(model, width), device, precision, why))
            else:
                trainings.append((network_name(model, width), precision, training(model, width, precision)))
    timing_devices = [device] + (["cpu"] if device == "cuda" and bool(values["time_cpu"]) else [])
    timings = []
    for where in timing_devices:
        timings += _timings(values, where, networks, ["fp32"], compiled=False)
        supported = []
        for precision in precisions[1:]:
            why = precision_support(where, precision)
            if why:
                skipped += [Skipped("inference", network_name(m, w), where, precision, why) for m, w in pair]
            else:
                supported.append(precision)
        timings += _timings(values, where, pair, supported, compiled=False)
        if not use_compile:
            skipped.append(Skipped("compiled inference", "every network", where, "", "use_compile is False"))
        elif where == "cpu" and switches().no_cpu_compile:
            skipped.append(Skipped("compiled inference", "every network", where, "", f"{NO_CPU_COMPILE}=1 is set"))
        else:
            timings += _timings(values, where, pair, ["fp32", *supported], compiled=True)
    layers = tuple(
        (
            network_name(m, w),
            layer_profile_request(
                m,
                width=w,
                device=device,
                batch=layer_batch,
                warmup=int(values["warmup"]),
                max_runs=int(values["throughput_runs"]),
            ),
        )
        for m, w in pair
    )
    busy = tuple(
        (
            network_name(m, w),
            device_busy_request(
                m,
                width=w,
                device=device,
                mode=mode,
                batch=batch,
                steps=int(values["busy_steps"]),
                warmup=int(values["warmup"]),
            ),
        )
        for m, w in pair
        for mode in MODES
        for batch in dict.fromkeys((1, large))
    )
    notes = [
        f"Trainings: the fast engine (data on the device), {budget[0][1].settings['precision']}, eager, on "
        f"`{device}`; inference timed in channels_last, "
        f"at batch 1 and {large}, on {' and '.join(f'`{d}`' for d in timing_devices)}."
    ]
    notes += skipped_notes(skipped)
    return Plan(
        device,
        tuple(widths),
        network_name("mobilenet_v2", compare_width),
        large,
        layer_batch,
        counts,
        budget,
        tuple(trainings),
        tuple(timings),
        layers,
        busy,
        tuple(skipped),
        tuple(notes),
    )


def _timings(values: Mapping[str, Any], device: str, networks, precisions, compiled: bool) -> list:
    large = int(values["throughput_batch"])
    found = []
    for model, width in networks:
        for precision in precisions:
            for batch in dict.fromkeys((1, large)):
                runs = int(values["latency_runs"]) if batch == 1 else int(values["throughput_runs"])
                request = timing_request(
                    model,
                    width=width,
                    device=device,
                    precision=precision,
                    batch=batch,
                    compile=compiled,
                    max_runs=runs,
                    warmup=int(values["warmup"]),
                    budget_s=float(values["timing_s"]),
                )
                found.append((network_name(model, width), request))
    return found


def e2_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The registered planner: E2's plan as the store's requests, with its notes."""
    plan = e2_plan(params)
    return Needs(plan.requests(), plan.notes)


# --- the measurements as frames ----------------------------------------------------------------------------


@dataclass
class E2:
    """E2's measurements as rows, each named by its network in words."""

    plan: Plan
    models: pd.DataFrame  # ResNet-18 and each width: parameters, MACs, test top-1, fp32 eager latency/throughput
    trainings: pd.DataFrame  # the pair per precision: epoch time, images/s, test top-1
    timings: pd.DataFrame  # every inference timing: network, device, precision, batch, mode, status, Summary in ms
    layers: dict[str, pd.DataFrame] = field(default_factory=dict)  # network -> each layer alone
    layer_counts: pd.DataFrame = field(default_factory=pd.DataFrame)  # network -> convolutions, MACs per image
    busy: pd.DataFrame = field(default_factory=pd.DataFrame)  # network, mode, batch -> busy fraction


def _rows(items, by_key: Mapping[str, Measured]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        measured = by_key.get(item[-1].key)
        if measured is not None:
            rows.append({**point_row(measured), "network": item[0]})
    return rows


def gather(plan: Plan, measured: Sequence[Measured]) -> E2:
    """The planned measurements that are recorded, as E2's frames (a missing one is left out)."""
    by_key = {item.key: item for item in measured}
    counts = pd.DataFrame(_rows(plan.counts, by_key))
    budget = pd.DataFrame(_rows(plan.budget, by_key))
    timings = pd.DataFrame(_rows(plan.timings, by_key))
    if not timings.empty:
        timings["mode"] = timings["compile"].map(lambda mode: "eager" if mode == "none" else "compiled")
    models = pd.DataFrame({"network": [name for name, _ in plan.counts]})
    if not counts.empty:
        kept = counts.reindex(columns=["network", "model", "width", "parameters", "macs"])
        models = models.merge(kept, on="network", how="left")  # width: MobileNetV2's, none for ResNet-18
        models["mmacs"] = models["macs"] / 1e6
    if not budget.empty:
        kept = ["network", "test_accuracy", "epoch_s_mean", "epochs_run", "train_images", "diverged", "run_id"]
        models = models.merge(budget.reindex(columns=kept), on="network", how="left")
    for column, batch in (("latency_ms", 1), ("images_per_s", plan.large_batch)):
        models[column] = [_timing_value(timings, name, plan.device, batch, column) for name in models["network"]]
    trainings = pd.DataFrame(_rows([(name, request) for name, _, request in plan.trainings], by_key))
    layers, counted = {}, []
    for name, request in plan.layers:
        found = by_key.get(request.key)
        if found is None:
            continue
        layers[name] = found.table("layers")
        results = found.results
        counted.append(
            {
                "network": name,
                **{k: results.get(k) for k in ("layers", "convolutions", "depthwise_convolutions", "macs_total")},
                "macs_per_image": float(results.get("macs_total") or 0) / int(request.settings["batch"]),
            }
        )
    busy = pd.DataFrame(_rows(plan.busy, by_key))
    return E2(plan, models, trainings, timings, layers, pd.DataFrame(counted), busy)


def _timing_value(timings: pd.DataFrame, network: str, device: str, batch: int, column: str) -> float | None:
    found = timing_row(timings, network, device, batch) if not timings.empty else None
    if found is None:
        return None
    return float(found["median_ms"]) if column == "latency_ms" else float(found["images_per_s"])


# --- question 1: the block ---------------------------------------------------------------------------------------


def block_source() -> str:
    """The inverted-residual block's source as a Markdown code block, read from the module (not retyped)."""
    from lablib.core.mobilenet import InvertedResidual

    return "```python\n" + inspect.getsource(InvertedResidual).rstrip() + "\n```"


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU)


def linear_bottleneck_sentence(block: nn.Module | None = None) -> str:
    """Question 1's answer, read from a block (default: InvertedResidual(24, 24, 6, 1), a stage-2 block):
    what it expands, filters and projects, and whether the projection is linear (no activation after it)."""
    from lablib.core.mobilenet import InvertedResidual

    block = block if block is not None else InvertedResidual(24, 24, 6, 1)
    layers = list(block.block)
    convolutions = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    expand, depthwise, project = convolutions[0], convolutions[-2], convolutions[-1]
    narrow, wide = expand.in_channels, depthwise.in_channels
    after_projection = layers[layers.index(project) + 1 :]
    activation = next((layer for layer in after_projection if isinstance(layer, ACTIVATIONS)), None)
    residual = bool(getattr(block, "use_residual", False))
    lead = (
        f"**Question 1:** `{type(block).__name__}` (its source above, read from the module) widens a "
        f"{narrow}-channel input {wide // narrow}× with a 1×1 convolution ({narrow} → {wide} channels, BatchNorm, "
        f"ReLU6), filters each of the {wide} channels alone with a {depthwise.kernel_size[0]}×"
        f"{depthwise.kernel_size[1]} depthwise convolution (BatchNorm, ReLU6), and projects back to "
        f"{project.out_channels} channels with a 1×1 convolution followed by "
    )
    if activation is not None:
        return lead + (
            f"{type(activation).__name__}: the projection is not linear, so this block has no linear bottleneck."
        )
    return lead + (
        "BatchNorm and no activation. That projection is the *linear bottleneck*: the narrow tensors between blocks "
        "carry the information, and a ReLU on so few channels would zero its negative values for good, so the "
        "projection stays linear and the non-linearities act only on the wide, expanded tensor. "
        + (
            f"Here stride 1 and {narrow} = {project.out_channels} channels let the input be added to the output: the "
            "residual joins the narrow ends (the *inverted* residual), where a classic bottleneck joins the wide ones."
            if residual
            else "Its stride or channel change leaves it without the identity residual that the other blocks "
            "of a stage add between their narrow ends."
        )
    )


# --- question 2: the MAC budget ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The MAC budget's answers: ResNet-18, the smallest width within WITHIN_POINTS, the one near NEAR_MACS."""

    reference: pd.Series | None
    within: pd.Series | None  # the smallest MobileNetV2 (by MACs) within WITHIN_POINTS of ResNet-18's test top-1
    near: pd.Series | None  # the MobileNetV2 nearest NEAR_MACS, within NEAR_FACTOR of it
    best: pd.Series | None  # the most accurate MobileNetV2


def budget_choice(models: pd.DataFrame) -> Choice:
    if models.empty or "test_accuracy" not in models:
        return Choice(None, None, None, None)
    accuracy = pd.to_numeric(models["test_accuracy"], errors="coerce")
    reference_rows = models[(models["network"] == REFERENCE) & accuracy.notna()]
    reference = reference_rows.iloc[0] if not reference_rows.empty else None
    mobile = models[(models["network"] != REFERENCE) & accuracy.notna()]
    best = mobile.loc[pd.to_numeric(mobile["test_accuracy"]).idxmax()] if not mobile.empty else None
    within = None
    if reference is not None:
        close = mobile[pd.to_numeric(mobile["test_accuracy"]) >= float(reference["test_accuracy"]) - WITHIN_POINTS]
        within = close.loc[pd.to_numeric(close["macs"]).idxmin()] if not close.empty else None
    sized = models[(models["network"] != REFERENCE) & pd.to_numeric(models.get("macs"), errors="coerce").gt(0)]
    near = None
    if not sized.empty:
        distance = (pd.to_numeric(sized["macs"]) / NEAR_MACS).map(lambda r: abs(math.log(r)))
        nearest = sized.loc[distance.idxmin()]
        near = nearest if distance.min() <= math.log(NEAR_FACTOR) else None
    return Choice(reference, within, near, best)


def budget_table(models: pd.DataFrame) -> pd.DataFrame:
    """Question 2's table: each network's parameters, MACs, test top-1, its drop against ResNet-18 (points),
    fp32 eager latency and throughput, and the marks of the smallest width within WITHIN_POINTS and the
    one near NEAR_MACS."""
    choice = budget_choice(models)
    table = models.copy()
    reference = number(choice.reference["test_accuracy"]) if choice.reference is not None else None
    accuracy = pd.to_numeric(table.get("test_accuracy"), errors="coerce")
    table["drop_points"] = reference - accuracy if reference is not None else float("nan")
    marks = {name: [] for name in table["network"]}
    if choice.reference is not None:
        marks[REFERENCE].append("reference")
    if choice.within is not None:
        marks[choice.within["network"]].append(f"smallest within {WITHIN_POINTS:g} point of {REFERENCE}")
    if choice.near is not None:
        marks[choice.near["network"]].append(f"near {NEAR_MACS / 1e6:g} M MACs")
    table["mark"] = table["network"].map(lambda name: "; ".join(marks[name]))
    columns = ["network", "parameters", "mmacs", "test_accuracy", "drop_points", "latency_ms", "images_per_s", "mark"]
    return table.reindex(columns=columns)


def _drop(row: pd.Series, reference: pd.Series) -> float:
    return float(reference["test_accuracy"]) - float(row["test_accuracy"])


def budget_sentence(models: pd.DataFrame, epochs: int, train_images: int | None, classes: int = 10) -> str:
    """Question 2's answer: ResNet-18's accuracy and MACs, the smallest width within WITHIN_POINTS, the one
    near NEAR_MACS with its drop; a caveat when the accuracies are too near chance to rank anything."""
    choice = budget_choice(models)
    reference = choice.reference
    if reference is None:
        return "**Question 2:** ResNet-18's test accuracy is not recorded, so no width can be judged against it."
    images = f" on {int(train_images):,} training images" if train_images else ""
    said = [
        f"**Question 2:** after {counted(epochs, 'epoch')}{images}, ResNet-18 ({float(reference['mmacs']):.1f} M MACs, "
        f"{int(reference['parameters']):,} parameters) reaches {float(reference['test_accuracy']):.2f} % test top-1."
    ]
    if choice.within is not None:
        within = choice.within
        said.append(
            f"The smallest MobileNetV2 within {WITHIN_POINTS:g} point of it is {within['network']}: "
            f"{float(within['mmacs']):.1f} M MACs ({float(reference['macs']) / float(within['macs']):.1f}× fewer), "
            f"{int(within['parameters']):,} parameters, {float(within['test_accuracy']):.2f} % "
            f"({_signed_drop(_drop(within, reference))})."
        )
    elif choice.best is not None:
        best = choice.best
        said.append(
            f"No width measured comes within {WITHIN_POINTS:g} point of it: the most accurate, {best['network']} "
            f"({float(best['mmacs']):.1f} M MACs), reaches {float(best['test_accuracy']):.2f} % "
            f"({_signed_drop(_drop(best, reference))})."
        )
    if choice.near is not None and number(choice.near.get("test_accuracy")) is not None:
        near = choice.near
        said.append(
            f"Near {NEAR_MACS / 1e6:g} M MACs, {near['network']} ({float(near['mmacs']):.1f} M MACs, "
            f"{float(reference['macs']) / float(near['macs']):.0f}× fewer than ResNet-18) reaches "
            f"{float(near['test_accuracy']):.2f} % ({_signed_drop(_drop(near, reference))})."
        )
    elif choice.near is None:
        said.append(f"No width measured lies within {NEAR_FACTOR:g}× of {NEAR_MACS / 1e6:g} M MACs.")
    chance = 100.0 / classes
    if float(reference["test_accuracy"]) < chance + NEAR_CHANCE_POINTS:
        said.append(
            f"These accuracies are within {NEAR_CHANCE_POINTS:g} points of chance ({chance:g} %): a training this "
            "short ranks nothing, so the budget's answer needs the lab's epochs and data."
        )
    return " ".join(said)


def _signed_drop(drop: float) -> str:
    if drop > 0:
        return f"{drop:.2f} points below ResNet-18"
    if drop < 0:
        return f"{-drop:.2f} points above ResNet-18"
    return "the same as ResNet-18"


# --- question 3: the answer in one sentence (its reasons are lablib.sections.speed's) -------------------------------


def mac_ratio(models: pd.DataFrame, reference: str, other: str) -> float | None:
    """How many times more MACs per image `reference` needs than `other` (None when either is not counted)."""
    if models.empty or "macs" not in models:
        return None
    macs = models.set_index("network")["macs"]
    if reference not in macs.index or other not in macs.index:
        return None
    top, bottom = number(macs[reference]), number(macs[other])
    return top / bottom if top and bottom else None


def question3_answer(e2: E2) -> str:
    """Question 3's answer: the compared MobileNetV2's MAC ratio against its measured speed, then the reasons."""
    plan = e2.plan
    ratio = mac_ratio(e2.models, REFERENCE, plan.compared)
    if ratio is None:
        return f"**Question 3:** the MACs of {REFERENCE} and {plan.compared} are not both counted."
    said = [
        "**Question 3:** "
        + mac_speed_sentence(ratio, REFERENCE, plan.compared, e2.timings, plan.device, plan.large_batch),
        "Why, part by part below: memory-bound depthwise convolutions, launch count and graph depth, precision, "
        "compile, and how busy the device is.",
        noise_sentence(e2.timings),
    ]
    return " ".join(part for part in said if part)


# --- the answers the headlines read --------------------------------------------------------------------------------


def _series(row: pd.Series | None, column: str) -> Any:
    return None if row is None else (None if pd.isna(row.get(column)) else row.get(column))


def e2_answers(e2: E2) -> dict[str, Any]:
    """What `section.finish` records: question 1's block count, question 2's choice, question 3's key figures."""
    choice = budget_choice(e2.models)
    plan = e2.plan
    counts = e2.layer_counts.set_index("network") if not e2.layer_counts.empty else pd.DataFrame()
    blocks = int(counts.loc[plan.compared, "depthwise_convolutions"]) if plan.compared in counts.index else None
    speeds = pair_speeds(e2.timings, REFERENCE, plan.compared, plan.device, (1, plan.large_batch))
    compiled = []
    for network in plan.pair:
        for batch in dict.fromkeys((1, plan.large_batch)):
            ratio = speed_ratio(
                timing_row(e2.timings, network, plan.device, batch, "fp32", "eager"),
                timing_row(e2.timings, network, plan.device, batch, "fp32", "compiled"),
            )
            if ratio is not None:
                compiled.append({"network": network, "batch": batch, "speedup": ratio[0]})
    busy = {}
    if not e2.busy.empty:
        for row in e2.busy.to_dict("records"):
            busy[f"{row['network']} {row['mode']} batch {row['batch']}"] = number(row.get("busy_fraction"))
    answers: dict[str, Any] = {
        "blocks": blocks,
        "compared": plan.compared,
        "timing_device": plan.device,
        "large_batch": plan.large_batch,
        "reference_accuracy": number(_series(choice.reference, "test_accuracy")),
        "reference_mmacs": number(_series(choice.reference, "mmacs")),
        "mac_ratio": mac_ratio(e2.models, REFERENCE, plan.compared),
        "speedup_batch1": speeds.get(1, (None, None))[0],
        "speedup_batch1_spread": speeds.get(1, (None, None))[1],
        "speedup_large": speeds.get(plan.large_batch, (None, None))[0],
        "compiled_speedups": compiled,
        "busy_fractions": busy,
        "budget_points": budget_table(e2.models).to_dict("records"),
    }
    for name, row in (("within", choice.within), ("near", choice.near), ("best", choice.best)):
        answers[f"{name}_network"] = _series(row, "network")
        answers[f"{name}_mmacs"] = number(_series(row, "mmacs"))
        answers[f"{name}_accuracy"] = number(_series(row, "test_accuracy"))
        drop = None if row is None or choice.reference is None else _drop(row, choice.reference)
        answers[f"{name}_drop"] = number(drop)
    return answers


def e2_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    lines = []
    blocks = number(row.get("blocks"))
    if blocks is not None:
        text = (
            f"inverted residual: 1×1 expansion, 3×3 depthwise, linear 1×1 projection; {int(blocks)} blocks in "
            f"{row.get('compared')}"
        )
        lines.append(answer(SECTION, "E2.1", text, int(blocks), "blocks", row))
    reference = number(row.get("reference_accuracy"))
    if reference is None:
        lines.append(missing(SECTION, "E2.2", "ResNet-18's test accuracy is not recorded"))
    elif row.get("within_network"):
        text = (
            f"{row['within_network']}: {shown(row.get('within_mmacs'), 1)} M MACs at "
            f"{shown(row.get('within_accuracy'))} % test top-1, within {WITHIN_POINTS:g} point of ResNet-18 "
            f"({shown(reference)} %, {shown(row.get('reference_mmacs'), 1)} M MACs)"
        )
        lines.append(answer(SECTION, "E2.2", text + _near_text(row), number(row.get("within_mmacs")), "M MACs", row))
    else:
        text = (
            f"no width within {WITHIN_POINTS:g} point of ResNet-18's {shown(reference)} %; the most accurate, "
            f"{row.get('best_network')}, is {shown(row.get('best_drop'))} points below"
        )
        lines.append(answer(SECTION, "E2.2", text + _near_text(row), number(row.get("best_drop")), "points", row))
    speed = number(row.get("speedup_batch1"))
    if speed is not None:
        spread = number(row.get("speedup_batch1_spread"))
        text = (
            f"{row.get('compared')}: {shown(row.get('mac_ratio'), 1)}× fewer MACs, {shown(speed)}×"
            f"{'' if spread is None else f' (± {shown(spread)})'} ResNet-18's speed at batch 1 (fp32 eager, "
            f"{row.get('timing_device')})"
        )
        busy = (row.get("busy_fractions") or {}).get(f"{row.get('compared')} inference batch 1")
        if number(busy) is not None:
            text += f"; device busy {100 * float(busy):.0f} % at batch 1"
        lines.append(answer(SECTION, "E2.3", text, speed, "×", row, spread))
    return lines


def _near_text(row: pd.Series) -> str:
    if not row.get("near_network") or number(row.get("near_drop")) is None:
        return ""
    return f"; near {NEAR_MACS / 1e6:g} M MACs, {row['near_network']} is {shown(row.get('near_drop'))} points below"


def e2_of(section) -> E2:
    """The notebook's E2 frames from its section (lablib.sections.setup.Section)."""
    return gather(e2_plan(section.params), section.measured)


PRESENTS = (Presenter(SECTION, ("E2.1", "E2.2", "E2.3"), e2_measurements, e2_headlines),)
