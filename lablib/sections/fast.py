"""X-FAST (how fast can this go): the lab's ResNet-18 training three ways, against the hardware's limit.

Three "training" measurements (lablib.core.training) and the model's "counts" (lablib.core.counts):
- faithful: the lab's loop with C3.2's best worker count, so it is the same measurement as C3's best
  point (trained once, reused);
- fast: the fast engine (lablib.core.fastpath: data and augmentation on the device, channels_last, bf16
  autocast where the device has it, torch.compile as `use_compile` / `cuda_graphs` say) at the same batch;
- fast-large: the fast engine at `large_batch` with the learning rate scaled (lablib.core.fastpath.scaled_lr).

Model-FLOPs utilisation (MFU) = training FLOPs per image (counted by torch.utils.flop_counter, forward +
backward) x images / seconds / the GPU's datasheet peak for the arithmetic used (lablib.core.counts); the
physical lower bound of an epoch is its FLOPs at that peak. Unknown GPUs and CPUs have no peak: "—".

The lab's targets are set for an H200 over the whole 50,000-image training set: they are judged only on a
measured epoch over all 50,000 images (the measurement's `train_images` says how many it trained on).
On a subset, every per-epoch figure says what it was measured on, and a 50,000-image epoch is only ever
*derived* from images/s, labelled so, and never judged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lablib.core.config import config_from_params
from lablib.core.counts import counts_request_for, find_gpu_peak, peak_flops
from lablib.core.errors import ConfigError, LabError
from lablib.core.fastpath import scaled_lr
from lablib.core.progress import counted
from lablib.core.store import Measured
from lablib.core.switches import NO_COMPILE, NO_CPU_COMPILE, Switches, switches
from lablib.core.timing import summarize
from lablib.core.training import resolve_device_type, training_request
from lablib.sections.headlines import Headline, answer, having, latest, missing, number, shown
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.workers import choose_workers

MODES = ("faithful", "fast", "fast-large")  # the X-FAST rows, in the order the table shows them
TARGET_GPU = "H200"  # the GPU the lab's time targets are set for (GPU_PEAKS names it "H200 SXM" / "H200 NVL")
FULL_TRAINING_SET = 50_000  # CIFAR-10's training images: the targets are for an epoch over all of them
TARGETS = {
    "faithful_epoch_s": 2.5,  # the faithful lab setting, s per 50,000-image epoch, at most
    "fast_epoch_s": 0.7,  # the fast engine at batch 128, s per 50,000-image epoch, at most
    "fast_stretch_epoch_s": 0.5,  # the fast engine's stretch goal
    "accuracy_gap_points": 2.0,  # fast minus faithful test top-1 after `accuracy_epochs`, at most this far apart
    "accuracy_epochs": 5,
}


# --- what X-FAST measures -----------------------------------------------------------------------------


def fast_compile(use_compile: bool, cuda_graphs: bool, device_type: str, flags: Switches) -> tuple[str, str]:
    """The fast engine's `compile` setting ("none" | "default" | "reduce-overhead") for the notebook's flags on
    this device, and the sentence that says why."""
    if not use_compile:
        return "none", "The fast engine runs without torch.compile (`use_compile` is off)."
    if flags.no_compile:
        return "none", f"The fast engine runs without torch.compile: `{NO_COMPILE}=1` turns it off."
    if flags.no_cpu_compile and device_type == "cpu":
        return "none", f"The fast engine runs without torch.compile: `{NO_CPU_COMPILE}=1` turns it off on the CPU."
    if cuda_graphs and device_type == "cuda":
        return "reduce-overhead", "The fast engine is compiled with mode `reduce-overhead` (CUDA graphs)."
    why = " (CUDA graphs exist on CUDA only)" if cuda_graphs else " (`cuda_graphs` is off)"
    return "default", f"The fast engine is compiled with mode `default`{why}."


def x_fast_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """faithful (C3.2's best workers: C3's best point itself), fast, fast-large, and the model's counts."""
    workers, note = choose_workers(params, recorded)
    config = config_from_params({**params, "workers": workers})
    device = resolve_device_type(config.device)
    mode, compile_note = fast_compile(
        bool(params.get("use_compile", True)), bool(params.get("cuda_graphs", True)), device, switches()
    )
    # The fast engine has no loader: its batches are cut on the device, so no worker count is in its key.
    engine = dataclasses.replace(config, workers=0)
    large_batch, rule = int(params.get("large_batch", 512)), str(params.get("lr_scaling", "sqrt"))
    if large_batch <= config.batch_size:
        raise ConfigError(
            f"large_batch={large_batch} is not larger than batch_size={config.batch_size}; fast-large needs a larger "
            "batch (the lab's: 512)."
        )
    large = dataclasses.replace(
        engine, batch_size=large_batch, lr=scaled_lr(config.lr, large_batch, config.batch_size, rule)
    )
    requests = (
        training_request(config),
        training_request(engine, engine="fast", compile=mode, save_weights=False),
        training_request(large, engine="fast", compile=mode, save_weights=False),
        counts_request_for(config.data),
    )
    return Needs(requests, (f"Faithful mode: {note}", compile_note))


def split(measured: Sequence[Measured]) -> tuple[list[Measured], Measured]:
    """(the three trainings in MODES order, the counts) among a section's measurements (the planner's order)."""
    trainings = [item for item in measured if item.request.kind == "training"]
    counts = [item for item in measured if item.request.kind == "counts"]
    if len(trainings) != len(MODES) or len(counts) != 1:
        raise LabError(
            f"X-FAST presents {len(MODES)} trainings and the model's counts; got {len(trainings)} and {len(counts)}."
        )
    return trainings, counts[0]


# --- the figures of one mode -----------------------------------------------------------------------------


def steady(epochs: Sequence[Mapping[str, Any]]) -> tuple[float, float | None]:
    """(mean epoch time after the first, its std): the first epoch pays start-up (cuDNN autotuning, worker
    start, compile leftovers); with one epoch, that epoch and no spread."""
    times = [float(e["total_s"]) for e in epochs]
    if not times:
        return float("nan"), None
    later = summarize(times[1:] or times)
    return later.mean, later.std if later.runs > 1 else None


def math_precision(precision: str, device_type: str, device_name: str | None) -> str:
    """The arithmetic the convolutions run in, which decides the peak to compare with: bf16 autocast -> bf16;
    fp32 on a GPU with TF32 tensor cores (cuDNN's default) -> tf32; otherwise fp32."""
    if precision == "bf16":
        return "bf16"
    peak = find_gpu_peak(device_name) if device_type == "cuda" else None
    return "tf32" if peak is not None and peak.tf32 is not None else "fp32"


def mode_row(
    mode: str, values: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]], flops_per_image: float
) -> dict[str, Any]:
    """One row of X-FAST's table from a training's point (lablib.sections.points.row) and its epochs: the steady
    epoch and its spread, throughput, compile, MFU, lower bound, test accuracy."""
    seconds, spread = steady(epochs)
    images = int(pd.Series([e["images"] for e in epochs]).median()) if epochs else 0
    device_type = str(values["resolved_device"])
    name = values.get("device_name") if device_type == "cuda" else None
    precision = math_precision(str(values.get("precision", "fp32")), device_type, name)
    peak = peak_flops(name, precision)
    achieved = flops_per_image * images / seconds if seconds > 0 else float("nan")
    per_s = images / seconds if seconds > 0 else float("nan")
    train_images = int(values.get("train_images") or 0)
    return {
        "mode": mode,
        "engine": values.get("engine", "faithful"),
        "batch_size": int(values["batch_size"]),
        "lr": float(values["lr"]),
        "workers": int(values["workers"]),
        "compile": values.get("compile", "none"),
        "math_precision": precision,
        "epochs": int(values["epochs"]),
        "epochs_run": len(epochs),
        "epoch_s": seconds,
        "epoch_s_std": spread,
        "epoch1_s": float(epochs[0]["total_s"]) if epochs else float("nan"),
        "epoch_images": images,
        "train_images": train_images,
        "images_per_s": per_s,
        "full_epoch_s": FULL_TRAINING_SET / per_s if per_s > 0 and train_images < FULL_TRAINING_SET else None,
        "compile_s": number(values.get("compile_s")) if values.get("engine") == "fast" else None,
        "compiles": values.get("compiles") if values.get("engine") == "fast" else None,
        "flops_per_image": flops_per_image,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": None if peak is None else peak / 1e12,
        "mfu": None if peak is None else achieved / peak,
        "lower_bound_s": None if peak is None else flops_per_image * images / peak,
        "test_accuracy": number(values.get("test_accuracy")),
        "device_name": values.get("device_name") or device_type,
        "device_type": device_type,
        "run_id": values["run_id"],
    }


def mode_rows(measured: Sequence[Measured]) -> pd.DataFrame:
    """X-FAST's three modes as rows (indexed by mode), from the section's measurements."""
    from lablib.sections.points import row as point

    trainings, counts = split(measured)
    flops = float(counts.results["training_flops"])
    rows = [mode_row(mode, point(item), item.epochs, flops) for mode, item in zip(MODES, trainings)]
    return pd.DataFrame(rows).set_index("mode", drop=False)


def mode_epochs(measured: Sequence[Measured]) -> pd.DataFrame:
    """One row per epoch of each mode (lablib.sections.points.epochs_frame) with its `mode`, in MODES order."""
    from lablib.sections.points import epochs_frame

    trainings, _ = split(measured)
    epochs = epochs_frame(trainings)
    modes = {item.run_id: mode for mode, item in zip(MODES, trainings)}
    return epochs.assign(mode=epochs["run_id"].map(modes)) if not epochs.empty else epochs


def full_data(row: Mapping[str, Any]) -> bool:
    """Whether the mode trained on all 50,000 training images (its measured `train_images`, not its settings)."""
    return int(row.get("train_images") or 0) >= FULL_TRAINING_SET


def on_target_gpu(row: Mapping[str, Any]) -> bool:
    peak = find_gpu_peak(str(row.get("device_name") or "")) if row.get("device_type") == "cuda" else None
    return peak is not None and peak.name.startswith(TARGET_GPU)


# --- the table ---------------------------------------------------------------------------------------------

TABLE_COLUMNS = [
    "mode",
    "batch_size",
    "lr",
    "math_precision",
    "epoch_images",
    "epoch_s",
    "epoch_s_std",
    "epoch1_s",
    "images_per_s",
    "full_epoch_s",
    "compile_s",
    "achieved_tflops",
    "peak_tflops",
    "mfu",
    "lower_bound_s",
    "test_accuracy",
]


def speed_headers(rows: pd.DataFrame) -> dict[str, str]:
    """The table's own words for its epoch time: the mean after epoch 1, or epoch 1 itself when it is the only one."""
    if int(rows["epochs_run"].max()) <= 1:
        return {"epoch_s": "epoch time, epoch 1 only (s)", "epoch_s_std": "epoch time, std (s)"}
    return {"epoch_s": "epoch time, mean after epoch 1 (s)"}


def speed_table(rows: pd.DataFrame) -> pd.DataFrame:
    """X-FAST's comparison, one row per mode in MODES order; None where there is no peak (shown as —)."""
    table = rows.reset_index(drop=True).copy()
    table["order"] = [MODES.index(m) if m in MODES else len(MODES) for m in table["mode"]]
    return table.sort_values(["order", "batch_size"]).reindex(columns=TABLE_COLUMNS).reset_index(drop=True)


def fast_points(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as the section's answers (its record's `fast_points`, what the headline reads)."""
    keep = ["mode", "batch_size", "epoch_s", "epoch_s_std", "epoch_images", "train_images", "images_per_s"]
    keep += ["full_epoch_s", "mfu", "test_accuracy", "device_name", "compile_s"]
    return [{k: row[k] for k in keep} for row in rows.reset_index(drop=True).to_dict("records")]


# --- the sentences ------------------------------------------------------------------------------------------


def format_mfu(value: Any) -> str:
    """'23.4 %', or '—' when there is no peak to compare with."""
    found = number(value)
    return "—" if found is None else f"{100 * found:.1f} %"


def times_faster(reference_s: float, seconds: float) -> str:
    """'3.3× faster per epoch' (or '1.2× slower per epoch') than `reference_s`."""
    ratio = reference_s / seconds
    return f"{ratio:.1f}× faster per epoch" if ratio >= 1 else f"{1 / ratio:.1f}× slower per epoch"


def flops_sentence(flops_per_image: float, device_type: str) -> str:
    return (
        "Training FLOPs per image (forward + backward, `torch.utils.flop_counter`): "
        f"**{flops_per_image / 1e9:.3f} GFLOP**; device `{device_type}`."
    )


def per_epoch(row: Mapping[str, Any]) -> str:
    """'1.92 ± 0.01 s per epoch of 20,000 images' (every per-epoch figure says what it was measured on)."""
    spread = number(row.get("epoch_s_std"))
    plus = f" ± {spread:.2f}" if spread is not None else ""
    return f"{row['epoch_s']:.2f}{plus} s per epoch of {int(row['epoch_images']):,} images"


def derived(row: Mapping[str, Any]) -> str:
    """'; ≈ 1.9 s per 50,000-image epoch, derived from 26,000 images/s on 20,000 images' on a subset, else ''."""
    if full_data(row) or number(row.get("full_epoch_s")) is None:
        return ""
    return (
        f"; ≈ {row['full_epoch_s']:,.2f} s per {FULL_TRAINING_SET:,}-image epoch, derived from "
        f"{row['images_per_s']:,.0f} images/s on {int(row['train_images']):,} images"
    )


def basis_sentence(rows: pd.DataFrame) -> str:
    """What every per-epoch figure below was measured on, and what a full epoch means for each mode."""
    once = (
        " With one epoch per mode, its epoch time is epoch 1's, start-up included."
        if int(rows["epochs_run"].max()) <= 1
        else ""
    )
    return _basis(rows) + once


def _basis(rows: pd.DataFrame) -> str:
    sizes = sorted({int(n) for n in rows["train_images"]})
    if all(full_data(row) for row in rows.to_dict("records")):
        dropped = [
            f"{row['mode']} {int(row['epoch_images']):,}"
            for row in rows.to_dict("records")
            if int(row["epoch_images"]) < int(row["train_images"])
        ]
        return f"Every per-epoch figure is measured on epochs over all {FULL_TRAINING_SET:,} training images" + (
            f" (the fast engine's epochs keep full batches only: {', '.join(dropped)} images per epoch)."
            if dropped
            else "."
        )
    return (
        f"Every per-epoch figure is measured on a training set of {', '.join(f'{n:,}' for n in sizes)} images, not "
        f"the {FULL_TRAINING_SET:,} of CIFAR-10: per-epoch times are that subset's. A 50,000-image epoch is only "
        "derived from images/s, labelled so, and never judged against the lab's targets."
    )


def time_targets_sentence(faithful: Mapping[str, Any], fast: Mapping[str, Any]) -> str:
    """The lab's epoch-time targets, judged only for epochs measured over all 50,000 images on the target GPU."""
    goal = (
        f"The lab's time targets on an {TARGET_GPU} over the full {FULL_TRAINING_SET:,} images are at most "
        f"{TARGETS['faithful_epoch_s']} s per faithful epoch and {TARGETS['fast_epoch_s']} s per fast epoch "
        f"({TARGETS['fast_stretch_epoch_s']} s as a stretch)"
    )
    if not (full_data(faithful) and full_data(fast)):
        sizes = sorted({int(faithful["train_images"]), int(fast["train_images"])})
        return (
            f"{goal}; this run trained on {' and '.join(f'{n:,}' for n in sizes)} images, not all "
            f"{FULL_TRAINING_SET:,}, so it is not judged against them (a derived full-epoch figure is an estimate, "
            "not a measured epoch)."
        )
    if not on_target_gpu(fast):
        return (
            f"{goal}; this run (`{fast['device_name']}`) is not on an {TARGET_GPU}, so it is not judged against them."
        )
    faithful_met = faithful["epoch_s"] <= TARGETS["faithful_epoch_s"]
    if fast["epoch_s"] <= TARGETS["fast_stretch_epoch_s"]:
        fast_verdict = "meets the stretch goal"
    elif fast["epoch_s"] <= TARGETS["fast_epoch_s"]:
        fast_verdict = "meets its target"
    else:
        fast_verdict = "misses its target"
    return (
        f"{goal}: the faithful setting {'meets' if faithful_met else 'misses'} its target at "
        f"{faithful['epoch_s']:.2f} s, and the fast engine {fast_verdict} at {fast['epoch_s']:.2f} s."
    )


def accuracy_target_sentence(faithful: Mapping[str, Any], fast: Mapping[str, Any]) -> str:
    """Whether the fast engine keeps the faithful accuracy: judged after the target's epochs on all 50,000 images."""
    limit, epochs = TARGETS["accuracy_gap_points"], TARGETS["accuracy_epochs"]
    goal = (
        f"The lab's accuracy target is the fast engine within {limit:g} points of the faithful setting after "
        f"{epochs} epochs on all {FULL_TRAINING_SET:,} training images"
    )
    if not (int(fast["epochs_run"]) == epochs and full_data(fast) and full_data(faithful)):
        return (
            f"{goal}; this run ({counted(int(fast['epochs_run']), 'epoch')} on {int(fast['train_images']):,} images) "
            f"is not "
            "judged against it."
        )
    if number(fast.get("test_accuracy")) is None or number(faithful.get("test_accuracy")) is None:
        return f"{goal}; a test accuracy is missing (a diverged run), so it is not judged."
    gap = fast["test_accuracy"] - faithful["test_accuracy"]
    return f"{goal}: {'met' if abs(gap) <= limit else 'missed'}, {gap:+.2f} points."


def findings(rows: pd.DataFrame, lr_scaling: str) -> list[str]:
    """X-FAST's conclusions from its three modes (mode_rows)."""
    faithful, fast, large = (rows.loc[mode].to_dict() for mode in MODES)
    device_type = fast["device_type"]
    if number(fast.get("lower_bound_s")) is not None:
        bound = f"{fast['lower_bound_s']:.3f} s against the measured {fast['epoch_s']:.2f} s (same images per epoch)."
    else:
        bound = f"— on `{fast['device_name']}`, which has no datasheet peak in the table, so MFU shows — too."
        if device_type == "cpu":
            bound += (
                " **GPU figures are still to be measured on a GPU**: this run was on the CPU, where the fast engine "
                "runs (on-device augmentation, channels_last) but its speed says nothing about a GPU's."
            )
    compile_s = number(fast.get("compile_s"))
    compiled = (
        f", after {compile_s:.1f} s of compilation ({counted(int(number(fast.get('compiles')) or 0), 'compile')}, "
        f"counted "
        "from torch's compile events)"
        if fast["compile"] != "none" and compile_s is not None
        else " (not compiled)"
    )
    faithful_acc, fast_acc, large_acc = (number(r.get("test_accuracy")) for r in (faithful, fast, large))
    accuracy = (
        f"after {counted(int(fast['epochs_run']), 'epoch')} the test accuracy is {fast_acc:.2f} % on the fast engine "
        f"against "
        f"{faithful_acc:.2f} % in the faithful setting ({fast_acc - faithful_acc:+.2f} points), and "
        f"{large_acc:.2f} % at batch {int(large['batch_size'])}."
        if None not in (faithful_acc, fast_acc, large_acc)
        else "a test accuracy is missing (a diverged run stops before its test)."
    )
    return [
        f"**X-FAST.1:** on {faithful['device_name']} the faithful lab setting takes {per_epoch(faithful)} "
        f"({faithful['images_per_s']:,.0f} images/s{derived(faithful)}; MFU {format_mfu(faithful['mfu'])} of the "
        f"{faithful['math_precision']} peak); the fast engine at batch {int(fast['batch_size'])} takes "
        f"{per_epoch(fast)} ({fast['images_per_s']:,.0f} images/s{derived(fast)}; MFU {format_mfu(fast['mfu'])} of "
        f"the {fast['math_precision']} peak), {times_faster(faithful['epoch_s'], fast['epoch_s'])}{compiled}.",
        "**X-FAST.2:** the physical lower bound of a fast epoch (its FLOPs at the datasheet peak) is " + bound,
        f"**X-FAST.3:** at batch {int(large['batch_size'])} with lr {large['lr']:.3g} ({lr_scaling} scaling) the "
        f"fast engine takes {per_epoch(large)} ({large['images_per_s']:,.0f} images/s{derived(large)}; MFU "
        f"{format_mfu(large['mfu'])}).",
        f"**X-FAST.4:** {accuracy} " + accuracy_target_sentence(faithful, fast),
        time_targets_sentence(faithful, fast),
    ]


# --- answers at a glance ---------------------------------------------------------------------------------------


def x_fast_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    points = having(pd.DataFrame(row.get("fast_points") or []), "epoch_s")  # the modes that finished
    if points.empty:
        return [missing("x_fast", "X-FAST", "no mode finished its epochs")]
    fastest = points.loc[points["epoch_s"].astype(float).idxmin()]
    deviation = number(fastest.get("epoch_s_std"))
    plus = f" ± {shown(deviation)}" if deviation is not None else ""
    text = (
        f"fastest mode {fastest['mode']}: {shown(fastest['epoch_s'])}{plus} s per epoch of "
        f"{int(fastest['epoch_images']):,} images"
    )
    if int(fastest.get("train_images") or 0) < FULL_TRAINING_SET and number(fastest.get("full_epoch_s")) is not None:
        text += f" (≈ {shown(fastest['full_epoch_s'])} s per 50,000 images, derived)"
    faithful = points[points["mode"] == "faithful"]
    if not faithful.empty and fastest["mode"] != "faithful":
        ratio = float(faithful.iloc[0]["epoch_s"]) / float(fastest["epoch_s"])
        text += f", {shown(ratio, 1)}× the lab's loop ({shown(faithful.iloc[0]['epoch_s'])} s)"
    return [answer("x_fast", "X-FAST", text, float(fastest["epoch_s"]), "s per epoch", row, deviation)]


PRESENTS = (Presenter("x_fast", ("X-FAST",), x_fast_measurements, x_fast_headlines, qualifier="mode"),)
