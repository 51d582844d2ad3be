"""Answers at a glance: one line per question part with its key figure, computed from the run records.

    headlines(tag="quick")                    -> [Headline, ...] for every section of the lab
    section_headlines("c3_workers", runs)     -> C3.1, C3.2, C3.3 from that section's records

`runs` is lablib.core.runs.load_runs(section, tag=..., root=...) (complete runs only). Parts carry the
2026 numbering (C2.1, C3.2, Q4, XC-2026, P-2025-C8, E1, X-FAST, as in the lab specification's tables);
a report for another year renumbers them from `Headline.section` and `Headline.part`. A section
without a complete record gives one Headline per part with `complete` False and a text that says so.
Which run answers: the latest complete run; for a sweep (C3, C4, C5, P-2025-C8, X-FAST), the latest
run of each swept value within the group of the latest run (the points the notebook shows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lablib.core.runs import latest_per, load_runs
from lablib.sections.tables import format_value

# notebook -> (section id in 2026 numbering, its question parts)
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "c1_training": ("C1", ("C1",)),
    "c2_timing": ("C2", ("C2.1", "C2.2", "C2.3")),
    "c3_workers": ("C3", ("C3.1", "C3.2", "C3.3")),
    "c4_gpu_vs_cpu": ("C4", ("C4",)),
    "c5_optimizers": ("C5", ("C5",)),
    "c6_no_batchnorm": ("C6", ("C6",)),
    "c7_torchscript": ("C7", ("C7",)),
    "c8_graph": ("C8", ("C8",)),
    "c9_eval": ("C9", ("C9",)),
    "c10_latency": ("C10", ("C10",)),
    "q1_conv_layers": ("Q1", ("Q1",)),
    "q2_last_linear": ("Q2", ("Q2",)),
    "q3_params_sgd": ("Q3", ("Q3",)),
    "q4_params_adam": ("Q4", ("Q4",)),
    "q5_trace_vs_script": ("Q5", ("Q5",)),
    "q6_scripting_changes": ("Q6", ("Q6",)),
    "xc_libtorch": ("XC-2026", ("XC-2026",)),
    "p25_worker_profile": ("P-2025-C4", ("P-2025-C4",)),
    "p25_compile": ("P-2025-C8", ("P-2025-C8",)),
    "p25_profiler": ("P-2025-XC", ("P-2025-XC",)),
    "e1_hparam_sweep": ("E1", ("E1",)),
    "e2_efficient_blocks": ("E2", ("E2",)),
    "x_fast": ("X-FAST", ("X-FAST",)),
}
NOT_RECORDED = "no complete record of this section yet"


@dataclass(frozen=True)
class Headline:
    section: str  # the notebook's name: "c3_workers"
    part: str  # the question part in 2026 numbering: "C3.2"
    text: str  # the answer in one line, its key figure included: "4 workers: 13.9 s per epoch"
    value: float | int | str | None  # the key figure (None when not recorded)
    unit: str  # the key figure's unit: "s per epoch", "%", "workers", "" for a count
    complete: bool = True  # False: no complete record answers this part
    run_id: str | None = None  # the run whose results give the figure

    def line(self) -> str:
        """`C3.2 — 4 workers: 13.9 s per epoch`."""
        return f"{self.part} — {self.text}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _f(value: Any, decimals: int = 2) -> str:
    return format_value(_number(value), decimals)


def _latest(runs: pd.DataFrame) -> pd.Series:
    return runs.sort_values("ended").iloc[-1]


def _with(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """The runs whose results hold a finite `column`."""
    if column not in runs:
        return runs.iloc[0:0]
    return runs[runs[column].map(lambda v: _number(v) is not None)]


def sweep_points(runs: pd.DataFrame, column: str, same_group: bool = True) -> pd.DataFrame:
    """The latest run per `column` value within the group of the latest run (what the notebook shows);
    `same_group` False: among all the runs (X-FAST's modes differ in their settings, so in their group)."""
    if runs.empty or column not in runs:
        return runs.iloc[0:0]
    latest = _latest(runs)
    group = runs[runs["group"] == latest["group"]] if same_group and "group" in runs else runs
    return latest_per(group.dropna(subset=[column]), column)


def _one(section: str, part: str, text: str, value: Any, unit: str, row: pd.Series | None) -> Headline:
    return Headline(section, part, text, value, unit, True, None if row is None else str(row.get("run_id")))


def _missing(section: str, part: str, why: str = NOT_RECORDED) -> Headline:
    return Headline(section, part, why, None, "", False, None)


# --- one builder per section: runs (complete, non-empty) -> headlines --------------------------------


def _c1(runs):
    row = _latest(runs)
    text = f"top-1 training accuracy {_f(row.get('final_accuracy'))} % after {int(row['epochs_run'])} epoch(s)"
    return [_one("c1_training", "C1", text + f", loss {_f(row.get('final_loss'), 3)}", row["final_accuracy"], "%", row)]


def _c2(runs):
    row = _latest(runs)
    parts = (
        ("C2.1", "data_s_mean", "data loading"),
        ("C2.2", "train_s_mean", "training"),
        ("C2.3", "epoch_s_mean", "total"),
    )
    return [
        _one(
            "c2_timing",
            part,
            f"{words} {_f(row.get(column))} s per epoch",
            _number(row.get(column)),
            "s per epoch",
            row,
        )
        for part, column, words in parts
    ]


def _c3(runs):
    points = sweep_points(runs, "workers")
    row = _latest(runs)
    fastest = points.loc[points["data_s_total"].astype(float).idxmin()]
    best = _number(row.get("sweep_best_workers"))
    best_row = (
        points[points["workers"] == best].iloc[0] if best is not None and (points["workers"] == best).any() else None
    )
    counts = ", ".join(str(int(w)) for w in points["workers"])
    lines = [
        _one(
            "c3_workers",
            "C3.1",
            f"data loading least with {int(fastest['workers'])} workers: {_f(fastest['data_s_total'])} s in total "
            f"(measured {counts})",
            float(fastest["data_s_total"]),
            "s",
            fastest,
        )
    ]
    if best_row is None:
        lines.append(_missing("c3_workers", "C3.2", "no best worker count recorded yet"))
        lines.append(_missing("c3_workers", "C3.3", "no best worker count recorded yet"))
        return lines
    lines.append(
        _one(
            "c3_workers",
            "C3.2",
            f"{int(best)} workers: {_f(best_row['epoch_s_mean'], 1)} s per epoch",
            int(best),
            "workers",
            row,
        )
    )
    share = _number(row.get("sweep_best_data_share"))
    stopped = _number(row.get("sweep_stopped_at"))
    why = f"at {int(best)} workers data loading is {_f(100 * share if share is not None else None, 1)} % of the epoch"
    why += f"; the data time stops falling at {int(stopped)} workers" if stopped is not None else ""
    lines.append(_one("c3_workers", "C3.3", why, share if share is None else 100 * share, "% of the epoch", row))
    return lines


def _c4(runs):
    with_speedup = _with(runs, "speedup")
    if not with_speedup.empty:
        row = _latest(with_speedup)
        text = (
            f"GPU {_f(row['speedup'], 1)}× faster than the CPU: {_f(row['gpu_epoch_s'])} s vs "
            f"{_f(row['cpu_epoch_s'])} s per epoch"
        )
        return [_one("c4_gpu_vs_cpu", "C4", text, float(row["speedup"]), "×", row)]
    measured = _with(runs, "epoch_s_mean")
    if measured.empty:
        return [_missing("c4_gpu_vs_cpu", "C4", "no device measured yet")]
    row = _latest(measured)
    device = row.get("target_device") or row.get("resolved_device")
    text = f"{device}: {_f(row['epoch_s_mean'])} s per epoch; no speed-up (the other device is not measured)"
    return [_one("c4_gpu_vs_cpu", "C4", text, float(row["epoch_s_mean"]), "s per epoch", row)]


def _c5(runs):
    points = _with(sweep_points(runs, "optimizer"), "final_accuracy")
    if points.empty:
        return [_missing("c5_optimizers", "C5", "every optimiser recorded diverged")]
    best = points.loc[points["final_accuracy"].astype(float).idxmax()]
    text = (
        f"best of {len(points)} optimiser(s): {best['optimizer']}, {_f(best['final_accuracy'])} % top-1 after "
        f"{int(best['epochs_run'])} epoch(s)"
    )
    return [_one("c5_optimizers", "C5", text, float(best["final_accuracy"]), "%", best)]


def _c6(runs):
    row = _latest(runs)
    text = f"without BatchNorm {_f(row.get('accuracy_mean'))} % mean top-1"
    reference = _number(row.get("reference_accuracy_mean"))
    text += f" (with BatchNorm {_f(reference)} %)" if reference is not None else " (no C5 SGD run to compare)"
    return [_one("c6_no_batchnorm", "C6", text, _number(row.get("accuracy_mean")), "%", row)]


def _c7(runs):
    row = _latest(runs)
    difference = _number(row.get("max_abs_difference"))
    same = "identical outputs" if bool(row.get("identical_outputs")) else "outputs differ"
    text = f"reloaded TorchScript: {same}, max abs difference {difference:.1e}" if difference is not None else same
    return [_one("c7_torchscript", "C7", text, difference, "", row)]


def _c8(runs):
    row = _latest(runs)
    count = _number(row.get("operation_count"))
    text = f"{int(count)} top-level operations in the scripted forward graph" if count is not None else "no graph"
    return [_one("c8_graph", "C8", text, None if count is None else int(count), "operations", row)]


def _c9(runs):
    row = _latest(runs)
    text = (
        f"test top-1 {_f(row.get('accuracy_eager'))} % PyTorch, {_f(row.get('accuracy_scripted'))} % TorchScript "
        f"on {format_value(row.get('images'))} images"
    )
    return [_one("c9_eval", "C9", text, _number(row.get("accuracy_scripted")), "%", row)]


def _c10(runs):
    row = _latest(runs)
    parts, value = [], None
    for device in ("cpu", "cuda"):
        script = _number(row.get(f"{device} TorchScript mean_ms"))
        eager = _number(row.get(f"{device} PyTorch eager mean_ms"))
        if script is None or eager is None:
            continue
        speedup = eager / script
        parts.append(f"{device} TorchScript {_f(script, 3)} ms vs eager {_f(eager, 3)} ms ({_f(speedup)}×)")
        value = speedup
    if not parts:
        return [_missing("c10_latency", "C10", "no latency measured")]
    return [_one("c10_latency", "C10", "; ".join(parts), value, "× (TorchScript vs eager)", row)]


def _q1(runs):
    row = _latest(runs)
    total, shortcut = int(row["conv_layers_total"]), int(row["conv_layers_shortcut"])
    text = f"{total} convolutional layers ({total - shortcut} without the {shortcut} 1×1 shortcut convolutions)"
    return [_one("q1_conv_layers", "Q1", text, total, "layers", row)]


def _q2(runs):
    row = _latest(runs)
    size = int(row["fc_in_features"])
    return [
        _one("q2_last_linear", "Q2", f"input dimension {size} (the 512 channels after global pooling)", size, "", row)
    ]


def _q34(section: str, part: str):
    def build(runs):
        row = _latest(runs)
        parameters, gradients = int(row["parameters"]), int(row["gradients_after"])
        text = f"{format_value(parameters)} trainable parameters and {format_value(gradients)} gradients"
        state = _number(row.get("optimizer_state_after"))
        if state is not None:
            text += f"; {row.get('optimizer', 'the optimiser')} keeps {format_value(int(state))} state elements"
        return [_one(section, part, text, parameters, "parameters", row)]

    return build


def _q5(runs):
    row = _latest(runs)
    wrong = row.get("traced_wrong_inputs") or []
    kept = "keeps" if bool(row.get("scripted_has_branch")) else "loses"
    lost = "loses" if not bool(row.get("traced_has_branch")) else "keeps"
    text = f"tracing {lost} the data-dependent branch (wrong on {len(wrong)} input(s)); scripting {kept} it"
    return [_one("q5_trace_vs_script", "Q5", text, len(wrong), "inputs traced wrong", row)]


def _q6(runs):
    row = _latest(runs)
    changed = "no change needed: scripted as written" if bool(row.get("scripted_unchanged")) else "changes were needed"
    modules = _number(row.get("compiled_modules"))
    text = f"{changed}, {int(modules) if modules is not None else '—'} modules compiled"
    difference = _number(row.get("max_abs_difference"))
    text += f", max abs difference {difference:.1e}" if difference is not None else ""
    return [_one("q6_scripting_changes", "Q6", text, None if modules is None else int(modules), "modules", row)]


def _xc(runs):
    row = _latest(runs)
    if not bool(row.get("cpp_built")):
        problem = str(row.get("build_problem") or "the build failed").splitlines()[0][:120]
        return [_one("xc_libtorch", "XC-2026", f"C++ program not built: {problem}", None, "", row)]
    same = "same predicted classes" if bool(row.get("same_classes")) else "different predicted classes"
    cpp, python = _number(row.get("cpp_mean_ms")), _number(row.get("python_mean_ms"))
    text = f"C++ and Python: {same}; latency C++ {_f(cpp, 3)} ms vs Python {_f(python, 3)} ms"
    return [_one("xc_libtorch", "XC-2026", text, cpp, "ms", row)]


def _p25_profile(runs):
    row = _latest(runs)
    counts = [int(c) for c in (row.get("compared_workers") or [])]
    parts = []
    for count in counts:
        data, train = _number(row.get(f"w{count}_data_s_mean")), _number(row.get(f"w{count}_train_s_mean"))
        parts.append(f"{count} worker(s): data {_f(data)} s / training {_f(train)} s per epoch")
    value = _number(row.get(f"w{counts[0]}_data_s_mean")) if counts else None
    text = "; ".join(parts) if parts else "no worker count recorded"
    return [_one("p25_worker_profile", "P-2025-C4", text, value, "s per epoch", row)]


def _p25_compile(runs):
    points = _with(sweep_points(runs, "compile_mode"), "steady_epoch_s")
    if points.empty:
        return [_missing("p25_compile", "P-2025-C8", "no compile mode finished its epochs")]
    fastest = points.loc[points["steady_epoch_s"].astype(float).idxmin()]
    eager = points[points["compile_mode"] == "eager"]
    text = (
        f"fastest steady epoch: {fastest['compile_mode']} {_f(fastest['steady_epoch_s'])} s "
        f"(first epoch {_f(fastest.get('first_epoch_s'))} s)"
    )
    if not eager.empty and fastest["compile_mode"] != "eager":
        text += f"; eager {_f(eager.iloc[0]['steady_epoch_s'])} s"
    return [_one("p25_compile", "P-2025-C8", text, float(fastest["steady_epoch_s"]), "s per epoch", fastest)]


def _p25_profiler(runs):
    row = _latest(runs)
    share, data = _number(row.get("top_operator_share")), _number(row.get("data_share"))
    text = f"top operator {row.get('top_operator')}: {_f(share, 1)} % of self CPU time"
    text += f"; data loading {_f(100 * data, 1)} % of the profiled steps" if data is not None else ""
    return [_one("p25_profiler", "P-2025-XC", text, share, "% of self CPU time", row)]


def _e1(runs):
    """One best setting per grid (E1 sweeps MNIST with a small CNN and CIFAR-10 with ResNet-18: two groups)."""
    from lablib.sections.hparams import best_setting, points

    parts, value, latest_row = [], None, _latest(runs)
    groups = runs.groupby("group") if "group" in runs else [("", runs)]
    for _, grid in sorted(groups, key=lambda item: item[1]["ended"].max()):
        best = best_setting(points(grid))
        model = _latest(grid).get("model") or "grid"
        if best is None:
            parts.append(f"{model}: every point diverged")
            continue
        parts.append(
            f"{model}: best {best['optimizer']}, lr {best['lr']:g}, scheduler {best['scheduler']}, "
            f"{_f(best['mean'])} % test top-1 ({int(best['seeds'])} seed(s))"
        )
        value = float(best["mean"])  # the grid recorded last gives the key figure
    if value is None:
        return [_missing("e1_hparam_sweep", "E1", "; ".join(parts) or NOT_RECORDED)]
    return [_one("e1_hparam_sweep", "E1", "; ".join(parts), value, "%", latest_row)]


def _e2(runs):
    row = _latest(runs)
    facts = row.get("findings") if isinstance(row.get("findings"), dict) else {}
    parameters = row.get("parameters_per_model") if isinstance(row.get("parameters_per_model"), dict) else {}
    if not facts:
        return [_missing("e2_efficient_blocks", "E2", "no comparison recorded")]
    other, ratio = facts.get("other"), _number(facts.get("mac_ratio"))
    speeds = [
        f"{device} {_f(entry.get('speedup_batch1'))}× at batch 1"
        for device, entry in (facts.get("devices") or {}).items()
        if _number(entry.get("speedup_batch1")) is not None
    ]
    text = f"{other}: {_f(ratio, 1)}× fewer MACs than ResNet-18"
    if other in parameters:
        text += f", {format_value(parameters[other])} parameters"
    text += f"; measured speed-up {', '.join(speeds)}" if speeds else ""
    return [_one("e2_efficient_blocks", "E2", text, ratio, "× fewer MACs", row)]


def _x_fast(runs):
    points = _with(sweep_points(runs, "mode", same_group=False), "epoch_s")
    if points.empty:
        return [_missing("x_fast", "X-FAST", "no mode finished its epochs")]
    fastest = points.loc[points["epoch_s"].astype(float).idxmin()]
    faithful = points[points["mode"] == "faithful"]
    text = f"fastest mode {fastest['mode']}: {_f(fastest['epoch_s'])} s per epoch"
    if not faithful.empty and fastest["mode"] != "faithful":
        ratio = float(faithful.iloc[0]["epoch_s"]) / float(fastest["epoch_s"])
        text += f", {_f(ratio, 1)}× the lab's loop ({_f(faithful.iloc[0]['epoch_s'])} s)"
    return [_one("x_fast", "X-FAST", text, float(fastest["epoch_s"]), "s per epoch", fastest)]


BUILDERS: dict[str, Callable[[pd.DataFrame], list[Headline]]] = {
    "c1_training": _c1,
    "c2_timing": _c2,
    "c3_workers": _c3,
    "c4_gpu_vs_cpu": _c4,
    "c5_optimizers": _c5,
    "c6_no_batchnorm": _c6,
    "c7_torchscript": _c7,
    "c8_graph": _c8,
    "c9_eval": _c9,
    "c10_latency": _c10,
    "q1_conv_layers": _q1,
    "q2_last_linear": _q2,
    "q3_params_sgd": _q34("q3_params_sgd", "Q3"),
    "q4_params_adam": _q34("q4_params_adam", "Q4"),
    "q5_trace_vs_script": _q5,
    "q6_scripting_changes": _q6,
    "xc_libtorch": _xc,
    "p25_worker_profile": _p25_profile,
    "p25_compile": _p25_compile,
    "p25_profiler": _p25_profiler,
    "e1_hparam_sweep": _e1,
    "e2_efficient_blocks": _e2,
    "x_fast": _x_fast,
}


def section_headlines(section: str, runs: pd.DataFrame) -> list[Headline]:
    """The one-line answers of one section (one per question part) from its complete runs."""
    if section not in SECTIONS:
        raise KeyError(f"{section!r} is not a section with answers; expected one of {', '.join(SECTIONS)}.")
    parts = SECTIONS[section][1]
    if runs is None or runs.empty:
        return [_missing(section, part) for part in parts]
    if "status" in runs:
        runs = runs[runs["status"] == "complete"]
        if runs.empty:
            return [_missing(section, part) for part in parts]
    try:
        lines = BUILDERS[section](runs)
    except (KeyError, TypeError, ValueError) as error:  # records from an older notebook lack a result
        return [_missing(section, part, f"the records lack a figure this answer needs ({error})") for part in parts]
    answered = {line.part for line in lines}
    return lines + [_missing(section, part) for part in parts if part not in answered]


def headlines(
    sections: Iterable[str] | None = None, tag: str | None = None, root: Path | None = None
) -> list[Headline]:
    """The answers of `sections` (default: every section), in the lab's order, from the run store."""
    return [
        line
        for section in (sections or SECTIONS)
        for line in section_headlines(section, load_runs(section, tag=tag, root=root))
    ]


def headline_frame(lines: Iterable[Headline]) -> pd.DataFrame:
    """The headlines as a table (section, part, text, value, unit, complete, run_id), for a report page."""
    return pd.DataFrame([line.to_dict() for line in lines], columns=list(Headline.__dataclass_fields__))
