"""C1 (training in PyTorch) and C2 (time measurement): one training run of the common setup, presented twice.

C1 and C2 ask for the same measurement, the lab's 5-epoch training with its timing, so it is
trained once (lablib.core.training) and both present it: C1 its loss and top-1 training accuracy
per epoch, C2 where each epoch's time goes (C2.1 data loading, C2.2 training, C2.3 total), with the
average per batch and each average's spread over the epochs after the first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lablib.core.config import config_from_params
from lablib.core.progress import counted
from lablib.core.training import training_request
from lablib.sections.headlines import Headline, answer, latest, number, shown
from lablib.sections.registry import Needs, Presenter, Recorded

BOTTLENECK_SHARE = 0.15  # below this share of the epoch, waiting for data is no longer the bottleneck
FIRST_EPOCH_SLOWER = 1.10  # epoch 1 more than 10 % slower than the later ones' mean: start-up costs are visible
MOMENTUM_OPTIMIZERS = ("sgd", "sgd_nesterov", "rmsprop")  # the optimisers that take the momentum setting


def finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def epoch_frame(epochs: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
    """EpochRecords (or their dicts, or a frame of them) as a frame, one row per epoch."""
    if isinstance(epochs, pd.DataFrame):
        return epochs.reset_index(drop=True)
    return pd.DataFrame([e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in epochs])


def epochs_phrase(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


# --- what C1 and C2 measure ------------------------------------------------------------------


def lab_training(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The lab's training with the notebook's settings, timed (C2 reads its seconds)."""
    return Needs((training_request(config_from_params(params)),))


# --- C1: the training run --------------------------------------------------------------


def training_setup_sentence(config, device_type: str) -> str:
    """What a training section trained with, from the settings it ran."""
    momentum = f", momentum {config.momentum:g}" if config.optimizer in MOMENTUM_OPTIMIZERS else ""
    return (
        f"Training: {epochs_phrase(config.epochs)} of batches of {config.batch_size} images, `{config.optimizer}` "
        f"with lr {config.lr:g}{momentum} and weight decay {config.weight_decay:g}, "
        f"{'with' if config.batch_norm else 'without'} BatchNorm, {counted(config.workers, 'loader worker')}, "
        f"on `{device_type}`."
    )


def training_text(epochs: pd.DataFrame | Sequence[Any], train_images: int, device_type: str, config) -> str:
    """C1's answer: the last epoch's loss and top-1 training accuracy, against the first epoch's."""
    frame = epoch_frame(epochs)
    if frame.empty:
        return "**C1:** no epoch was recorded."
    first, last = frame.iloc[0], frame.iloc[-1]
    diverged = bool(frame["diverged"].any()) if "diverged" in frame else not finite(last["loss"])
    lead = (
        f"**C1:** after {epochs_phrase(len(frame))} on {train_images:,} training images on `{device_type}` with "
        f"{config.workers} workers and `{config.optimizer}` (lr {config.lr:g}), "
    )
    if diverged:
        return lead + (
            f"the loss became NaN/inf in epoch {int(last['epoch'])} and training stopped there: at lr "
            f"{config.lr:g} the updates of `{config.optimizer}` grew without bound in this run."
        )
    if len(frame) == 1:
        return lead + (
            f"the average training loss is {last['loss']:.3f} and the top-1 training accuracy "
            f"{last['accuracy']:.2f} % (one epoch, so no trend yet)."
        )
    if last["loss"] < first["loss"]:
        trend = (
            f"the average training loss fell from {first['loss']:.3f} in epoch 1 to {last['loss']:.3f} and the "
            f"top-1 training accuracy went from {first['accuracy']:.2f} % to {last['accuracy']:.2f} %: the network "
            "is learning."
        )
    else:
        trend = (
            f"the average training loss did not fall ({first['loss']:.3f} in epoch 1, {last['loss']:.3f} in epoch "
            f"{int(last['epoch'])}; top-1 training accuracy {first['accuracy']:.2f} % and {last['accuracy']:.2f} %)."
        )
    return lead + trend


def training_results(epochs: pd.DataFrame | Sequence[Any]) -> dict[str, Any]:
    """C1's answers for its record: the last epoch's loss and accuracy, and the epochs run."""
    frame = epoch_frame(epochs)
    if frame.empty:
        return {"epochs_run": 0}
    last = frame.iloc[-1]
    return {
        "epochs_run": int(len(frame)),
        "final_loss": float(last["loss"]),
        "final_accuracy": float(last["accuracy"]),
        "diverged": bool(frame["diverged"].any()) if "diverged" in frame else False,
    }


# --- C2: where an epoch's time goes ------------------------------------------------------

TIMES = ("data_s", "train_s", "total_s")


def timing_frame(epochs: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
    """The epochs with `other_s` (outside the data and training intervals) and `train_ms_per_batch`."""
    frame = epoch_frame(epochs).copy()
    frame["other_s"] = frame["total_s"] - frame["data_s"] - frame["train_s"]
    frame["train_ms_per_batch"] = 1000 * frame["train_s"] / frame["batches"].clip(lower=1)
    return frame


def spread(values: pd.Series) -> float | None:
    """The standard deviation of the epochs after the first (epoch 1 pays start-up costs), or None with < 2."""
    later = values.iloc[1:].astype(float)
    return float(later.std(ddof=1)) if len(later) >= 2 else None


def timing_table(epochs: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
    """C2's table: one row per epoch, then their average; seconds to the millisecond, training per batch in ms."""
    frame = timing_frame(epochs)
    shown_columns = [
        "epoch",
        "data_s",
        "train_s",
        "other_s",
        "total_s",
        "batches",
        "train_ms_per_batch",
        "images",
        "images_per_s",
    ]
    table = frame[shown_columns]
    average = pd.DataFrame([{"epoch": "average", **table.drop(columns="epoch").mean().to_dict()}])
    table = pd.concat([table.astype({"epoch": object}), average], ignore_index=True)
    return table.rename(
        columns={
            "data_s": "C2.1 data-loading (s)",
            "train_s": "C2.2 training (s)",
            "other_s": "other (s)",
            "total_s": "C2.3 total (s)",
            "train_ms_per_batch": "training per batch (ms)",
            "images_per_s": "images/s",
        }
    ).round(3)


def timing_results(epochs: pd.DataFrame | Sequence[Any]) -> dict[str, Any]:
    """C2's answers: means over the epochs, epoch 1's, each mean's spread over the later epochs, shares."""
    frame = timing_frame(epochs)
    if frame.empty:
        return {}
    means = frame[["data_s", "train_s", "other_s", "total_s", "images_per_s", "train_ms_per_batch"]].mean()
    first = frame.iloc[0]
    results: dict[str, Any] = {
        "epochs_run": int(len(frame)),
        "data_s_mean": float(means["data_s"]),
        "train_s_mean": float(means["train_s"]),
        "epoch_s_mean": float(means["total_s"]),
        "other_s_mean": float(means["other_s"]),
        "images_per_s_mean": float(means["images_per_s"]),
        "train_ms_per_batch": float(means["train_ms_per_batch"]),
        "epoch1_data_s": float(first["data_s"]),
        "epoch1_train_s": float(first["train_s"]),
        "epoch1_total_s": float(first["total_s"]),
        "data_share": float(means["data_s"] / means["total_s"]),
        "train_share": float(means["train_s"] / means["total_s"]),
    }
    for column, name in (("data_s", "data"), ("train_s", "train"), ("total_s", "epoch")):
        results[f"{name}_s_spread"] = spread(frame[column])
    return results


def timing_text(epochs: pd.DataFrame | Sequence[Any], device_type: str, workers: int) -> str:
    """C2.1-C2.3 from the epochs' timings: averages, shares, per batch, the first epoch, what is left unmeasured."""
    frame = timing_frame(epochs)
    if frame.empty:
        return "**C2:** no epoch was recorded."
    mean, first = frame.mean(numeric_only=True), frame.iloc[0]
    data_share, train_share = mean["data_s"] / mean["total_s"], mean["train_s"] / mean["total_s"]
    several = len(frame) > 1
    later = frame.iloc[1:]["total_s"].mean() if several else None

    def first_epoch(column: str) -> str:
        return f"; epoch 1: {first[column]:.2f} s" if several else ""

    def plus_minus(column: str) -> str:
        value = spread(frame[column])
        return f" ± {value:.2f} s over epochs 2–{len(frame)}" if value is not None else ""

    data_verdict = (
        "waiting for data is a large part of the epoch, so the loader is a bottleneck here"
        if data_share >= BOTTLENECK_SHARE
        else "the training rarely waits for data"
    )
    said = [
        f"**C2.1:** waiting for data took {mean['data_s']:.2f} s per epoch on average{plus_minus('data_s')} "
        f"({data_share:.0%} of the epoch{first_epoch('data_s')}): {data_verdict}.",
        f"**C2.2:** training (copy, forward, backward, step) took {mean['train_s']:.2f} s per epoch on average"
        f"{plus_minus('train_s')} ({train_share:.0%}{first_epoch('train_s')}), "
        f"{mean['train_ms_per_batch']:.1f} ms per batch of {int(first['images'] / max(first['batches'], 1))} "
        "images.",
    ]
    total = (
        f"**C2.3:** a whole epoch took {mean['total_s']:.2f} s on average{plus_minus('total_s')}"
        + (f" (epoch 1: {first['total_s']:.2f} s)" if several else "")
        + f", {mean['images_per_s']:.0f} images/s over {int(first['images']):,} images per epoch, on `{device_type}` "
        f"with {workers} workers; {mean['other_s']:.3f} s per epoch fall outside the two measured intervals."
    )
    if several and first["total_s"] > FIRST_EPOCH_SLOWER * later:
        total += (
            f" Epoch 1 is {first['total_s'] / later - 1:.0%} slower than the later epochs' mean ({later:.2f} s): "
            "it pays the one-time start-up costs (memory allocation, library initialisation, cold caches)."
        )
    said.append(total)
    return "\n\n".join(said)


# --- answers at a glance ---------------------------------------------------------------------------


def c1_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    text = (
        f"top-1 training accuracy {shown(row.get('final_accuracy'))} % after {counted(int(row['epochs_run']), 'epoch')}"
    )
    return [
        answer("c1_training", "C1", text + f", loss {shown(row.get('final_loss'), 3)}", row["final_accuracy"], "%", row)
    ]


def c2_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    parts = (
        ("C2.1", "data_s_mean", "data_s_spread", "data loading"),
        ("C2.2", "train_s_mean", "train_s_spread", "training"),
        ("C2.3", "epoch_s_mean", "epoch_s_spread", "total"),
    )
    lines = []
    for part, column, spread_column, words in parts:
        deviation = number(row.get(spread_column))
        plus = f" ± {shown(deviation)}" if deviation is not None else ""
        text = f"{words} {shown(row.get(column))}{plus} s per epoch"
        if part == "C2.2" and number(row.get("train_ms_per_batch")) is not None:
            text += f" ({shown(row.get('train_ms_per_batch'), 1)} ms per batch)"
        lines.append(answer("c2_timing", part, text, number(row.get(column)), "s per epoch", row, deviation))
    return lines


PRESENTS = (
    Presenter("c1_training", ("C1",), lab_training, c1_headlines),
    Presenter("c2_timing", ("C2.1", "C2.2", "C2.3"), lab_training, c2_headlines),
)
