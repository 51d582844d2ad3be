"""C5 (optimisers) and C6 (without batch norm): trainings that differ in one setting, compared.

C5 trains the common setup once per optimiser (SGD, SGD with Nesterov, Adagrad, Adadelta, Adam), all
with C3.2's best worker count; its SGD run is C3's best point itself, trained once. C6 trains SGD
with every BatchNorm replaced by identity under exactly the same conditions as C5's SGD (the same
workers, epochs, data and device), and compares loss, accuracy and training time per epoch with it,
argued from the numbers and their spread over the epochs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from lablib.core.config import config_from_params
from lablib.core.optim import OPTIMIZERS
from lablib.core.progress import counted
from lablib.core.train import DIVERGENCE_RULE
from lablib.core.training import training_request
from lablib.sections.headlines import Headline, answer, having, latest, missing, number, shown
from lablib.sections.parameters import parse_names
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.training import epochs_phrase, finite, spread
from lablib.sections.workers import choose_workers

C5_OPTIMIZERS = ("sgd", "sgd_nesterov", "adagrad", "adadelta", "adam")  # LAB_SPEC C5
SAME_COST_SPREAD = 0.10  # training times within 10 % of each other: the optimiser's update costs about the same
LOSS_TIE = 0.05  # average losses closer than this: the two trainings are about equally good
ACCURACY_TIE = 1.0  # points of top-1 accuracy within which two runs trained equally well
_finite = finite


def parse_optimizers(text: str) -> list[str]:
    """'sgd,adam' -> ['sgd', 'adam'], each checked, in the order given."""
    return parse_names(text, "optimizers", OPTIMIZERS, f"(the lab's: {','.join(C5_OPTIMIZERS)})")


def c5_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """One training per optimiser of `optimizers`, with C3.2's best workers."""
    workers, note = choose_workers(params, recorded)
    config = config_from_params({**params, "workers": workers})
    requests = tuple(
        training_request(dataclasses.replace(config, optimizer=name))
        for name in parse_optimizers(params.get("optimizers", ",".join(C5_OPTIMIZERS)))
    )
    return Needs(requests, (note,))


def c6_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """SGD without BatchNorm, and C5's SGD run with it: the same workers, epochs, data and device."""
    workers, note = choose_workers(params, recorded)
    config = dataclasses.replace(config_from_params({**params, "workers": workers}), optimizer="sgd")
    without = training_request(dataclasses.replace(config, batch_norm=False))
    with_norm = training_request(dataclasses.replace(config, batch_norm=True))
    return Needs(
        (without, with_norm), (note, "C5's SGD run (with BatchNorm) is the reference, under the same conditions.")
    )


# --- C5: optimisers ------------------------------------------------------------------


def mark_diverged(points: pd.DataFrame) -> pd.DataFrame:
    """A copy with a `diverged` column that is True when the run said so (DIVERGENCE_RULE) or its loss is not
    finite (a NaN loss is stored as null in the records): such points stay in the table."""
    table = points.copy()
    flagged = table["diverged"].fillna(False).astype(bool) if "diverged" in table else False
    loss = table["final_loss"] if "final_loss" in table else pd.Series(float("nan"), index=table.index)
    table["diverged"] = flagged | ~loss.apply(_finite)
    table["outcome"] = table["diverged"].map({True: "diverged (stopped)", False: "trained"})
    return table


def optimizer_table(points: pd.DataFrame) -> pd.DataFrame:
    """C5's comparison: one row per optimiser, rounded, diverged runs flagged and kept."""
    table = mark_diverged(points)
    columns = [
        "optimizer",
        "workers",
        "epochs_run",
        "train_s_mean",
        "epoch_s_mean",
        "final_loss",
        "final_accuracy",
        "loss_mean",
        "accuracy_mean",
        "outcome",
    ]
    return table.reindex(columns=columns).sort_values("optimizer").reset_index(drop=True)


def optimizer_discussion(points: pd.DataFrame) -> list[str]:
    """C5's discussion: fastest convergence, best accuracy, cheapest step, divergence."""
    if points.empty:
        return ["No optimiser point is recorded yet."]
    table = mark_diverged(points)
    healthy = table[~table["diverged"]]
    said = []
    if len(healthy) == 1:
        only = healthy.iloc[0]
        said.append(
            f"`{only['optimizer']}` is the only optimiser that trained without diverging so far: after "
            f"{counted(int(only['epochs_run']), 'epoch')} its training loss is {only['final_loss']:.3f} (top-1 "
            f"training "
            f"accuracy {only['final_accuracy']:.2f} %); the comparison needs the others."
        )
    elif not healthy.empty:
        lowest = healthy.loc[healthy["final_loss"].astype(float).idxmin()]
        accurate = healthy.loc[healthy["final_accuracy"].astype(float).idxmax()]
        said.append(
            f"`{lowest['optimizer']}` converged fastest: after {counted(int(lowest['epochs_run']), 'epoch')} its "
            f"training loss "
            f"is the lowest, {lowest['final_loss']:.3f} (top-1 training accuracy {lowest['final_accuracy']:.2f} %)."
        )
        if accurate["optimizer"] != lowest["optimizer"]:
            said.append(
                f"The highest training accuracy is `{accurate['optimizer']}`'s, "
                f"{accurate['final_accuracy']:.2f} % (loss {accurate['final_loss']:.3f})."
            )
        if len(healthy) > 1:
            slowest = healthy.loc[healthy["final_loss"].astype(float).idxmax()]
            said.append(
                f"The slowest to converge is `{slowest['optimizer']}` (loss {slowest['final_loss']:.3f}, "
                f"accuracy {slowest['final_accuracy']:.2f} %)."
            )
    timed = table.dropna(subset=["train_s_mean"])
    if len(timed) > 1:
        cheap = timed.loc[timed["train_s_mean"].astype(float).idxmin()]
        dear = timed.loc[timed["train_s_mean"].astype(float).idxmax()]
        spread = dear["train_s_mean"] / cheap["train_s_mean"] - 1
        said.append(
            f"Per epoch, training takes {cheap['train_s_mean']:.2f} s with `{cheap['optimizer']}` and "
            f"{dear['train_s_mean']:.2f} s with `{dear['optimizer']}` ({spread:.0%} apart)"
            + (
                ": the optimiser's update is small next to ResNet-18's forward and backward, so the time differs "
                "little."
                if spread < SAME_COST_SPREAD
                else "; the update itself (a few element-wise operations per parameter, more state for Adam, Adagrad "
                "and Adadelta) is small next to ResNet-18's forward and backward, so a gap this large comes "
                "mostly from the machine's load during the runs."
            )
        )
    said.append(_divergence_sentence(table))
    missing = sorted(set(C5_OPTIMIZERS) - set(table["optimizer"]))
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        said.append(f"Not measured: {names} (the lab's list: `-p optimizers {','.join(C5_OPTIMIZERS)}`).")
    return said


def _lr_phrase(rows: pd.DataFrame) -> str:
    """'lr 0.1' when the rows share one recorded lr, else each optimiser's lr."""
    if "lr" not in rows or rows["lr"].isna().all():
        return "the recorded lr"
    rates = sorted({float(r) for r in rows["lr"].dropna()})
    if len(rates) == 1:
        return f"lr {rates[0]:g}"
    return "their lr (" + ", ".join(f"`{o}` {float(r):g}" for o, r in zip(rows["optimizer"], rows["lr"])) + ")"


def _divergence_sentence(table: pd.DataFrame) -> str:
    """Which optimisers diverged, at the lr the records show; or that none did."""
    diverged = table[table["diverged"]]
    if diverged.empty:
        return f"None of the {counted(len(table), 'optimiser')} recorded diverged at {_lr_phrase(table)}."
    names = ", ".join(f"`{name}`" for name in diverged["optimizer"])
    return (
        f"Diverged ({DIVERGENCE_RULE}; training stopped): {names}; at {_lr_phrase(diverged)} their updates grew "
        "without bound, a step too large for them without a schedule."
    )


def ranking(points: pd.DataFrame) -> pd.DataFrame:
    """C5's optimisers ranked on each metric: training time per epoch (less is better), last-epoch loss (less)
    and last-epoch top-1 training accuracy (more); diverged runs rank last on loss and accuracy."""
    table = mark_diverged(points)
    ranked = pd.DataFrame({"optimizer": table["optimizer"]})
    ranked["time rank"] = table["train_s_mean"].astype(float).rank(method="min").astype("Int64")
    healthy_loss = table["final_loss"].where(~table["diverged"]).astype(float)
    healthy_accuracy = table["final_accuracy"].where(~table["diverged"]).astype(float)
    ranked["loss rank"] = healthy_loss.rank(method="min", na_option="bottom").astype("Int64")
    ranked["accuracy rank"] = healthy_accuracy.rank(method="min", ascending=False, na_option="bottom").astype("Int64")
    ranked["training per epoch (s)"] = table["train_s_mean"].astype(float)
    ranked["last-epoch loss"] = table["final_loss"].astype(float)
    ranked["last-epoch top-1 (%)"] = table["final_accuracy"].astype(float)
    return ranked.sort_values("accuracy rank").reset_index(drop=True)


def ranking_sentence(points: pd.DataFrame) -> str:
    """Which optimiser wins each metric, from the ranking."""
    if points.empty:
        return "No optimiser is recorded, so nothing is ranked."
    table = ranking(points)

    def winner(column: str, value: str, unit: str, decimals: int) -> str:
        rows = table[table[column] == 1]
        if rows.empty or pd.isna(rows.iloc[0][value]):
            return "none (every optimiser diverged)"
        names = " and ".join(f"`{name}`" for name in rows["optimizer"])
        return f"{names} ({rows.iloc[0][value]:.{decimals}f}{unit})"

    return (
        "Ranked on each metric: the shortest training time per epoch is "
        f"{winner('time rank', 'training per epoch (s)', ' s', 2)}; "
        f"the lowest last-epoch loss {winner('loss rank', 'last-epoch loss', '', 3)}; the highest last-epoch top-1 "
        f"training accuracy {winner('accuracy rank', 'last-epoch top-1 (%)', ' %', 2)}."
    )


# --- C6: against C5's SGD ------------------------------------------------------------


def batchnorm_parameters_sentence(num_classes: int = 10, in_channels: int = 3) -> str:
    """C6's model, counted: ResNet-18's trainable parameters with and without BatchNorm."""
    from lablib.core.model import count_parameters, resnet18

    with_norm = count_parameters(resnet18(num_classes=num_classes, batch_norm=True, in_channels=in_channels))
    without = count_parameters(resnet18(num_classes=num_classes, batch_norm=False, in_channels=in_channels))
    return (
        f"Without BatchNorm, ResNet-18 has {without:,} trainable parameters instead of {with_norm:,}: the "
        f"{with_norm - without:,} scale and shift parameters of its BatchNorm layers are gone."
    )


def time_spread(epochs: list[dict[str, Any]], column: str = "train_s") -> float | None:
    """The spread (std over the epochs after the first) of one measurement's per-epoch `column`."""
    frame = pd.DataFrame(epochs)
    return spread(frame[column]) if column in frame else None


def batchnorm_comparison(
    without: pd.Series, reference: pd.Series | None, without_epochs: list, reference_epochs: list
) -> tuple[pd.DataFrame, list[str]]:
    """C6's table (without BatchNorm vs C5's SGD run) and its sentences: loss, accuracy and training time."""
    columns = [
        "epochs_run",
        "loss_mean",
        "accuracy_mean",
        "final_loss",
        "final_accuracy",
        "train_s_mean",
        "epoch_s_mean",
    ]
    rows = [{"run": "C6: SGD without BatchNorm", **{c: without.get(c) for c in columns}}]
    lr = float(without.get("lr", 0.1))
    diverged = bool(without.get("diverged")) or not _finite(without.get("final_loss"))
    epochs = epochs_phrase(int(without.get("epochs_run") or 0))
    said = [
        f"Without BatchNorm, the average training loss over {epochs} is {float(without['loss_mean']):.3f} and the "
        f"average top-1 training accuracy {float(without['accuracy_mean']):.2f} %."
        + (f" **The training diverged ({without.get('diverged_reason') or DIVERGENCE_RULE}).**" if diverged else "")
    ]
    if reference is None:
        said.append("C5's SGD run with BatchNorm is not recorded, so there is nothing to compare against.")
        return pd.DataFrame(rows), said
    rows.append({"run": "C5: SGD with BatchNorm", **{c: reference.get(c) for c in columns}})
    loss_gap = float(without["loss_mean"]) - float(reference["loss_mean"])
    accuracy_gap = float(without["accuracy_mean"]) - float(reference["accuracy_mean"])
    if diverged:
        verdict = (
            f"BatchNorm keeps each layer's inputs normalised; without it, lr {lr:g} is too large a step for this "
            "deep network and the training diverged."
        )
    elif loss_gap > LOSS_TIE:
        verdict = (
            f"BatchNorm keeps each layer's inputs normalised, which lets lr {lr:g} train the deep network stably; "
            "without it the same step size trains more slowly."
        )
    elif loss_gap < -LOSS_TIE and accuracy_gap < -ACCURACY_TIE:
        verdict = (
            f"Here the run without BatchNorm reached the lower loss but the lower accuracy over {epochs}: the two "
            "measures disagree, so this run is too short to say whether BatchNorm helped."
        )
    elif loss_gap < -LOSS_TIE:
        verdict = (
            f"Here the run without BatchNorm reached the lower loss over {epochs}: at lr {lr:g} and this length "
            "of training, BatchNorm did not help."
        )
    else:
        verdict = (
            f"Over {epochs} the two trained about equally well (average losses within {LOSS_TIE:g}): this run "
            "is too short to show BatchNorm's effect."
        )
    said.append(
        f"With BatchNorm (C5's SGD run `{reference['run_id']}`, the same workers, epochs and data) the averages are "
        f"{float(reference['loss_mean']):.3f} and {float(reference['accuracy_mean']):.2f} %: removing BatchNorm "
        f"changes the average loss by {loss_gap:+.3f} and the accuracy by {accuracy_gap:+.2f} points. {verdict}"
    )
    said.append(time_sentence(without, reference, without_epochs, reference_epochs))
    return pd.DataFrame(rows), said


def time_sentence(without: pd.Series, reference: pd.Series, without_epochs: list, reference_epochs: list) -> str:
    """Training time per epoch with and without BatchNorm, the gap against the epochs' spread."""
    off, on = float(without["train_s_mean"]), float(reference["train_s_mean"])
    spreads = [s for s in (time_spread(without_epochs), time_spread(reference_epochs)) if s is not None]
    noise = max(spreads) if spreads else None
    gap = off - on
    plus = lambda epochs: (lambda s: f" ± {s:.2f}" if s is not None else "")(time_spread(epochs))  # noqa: E731
    lead = (
        f"Training takes {off:.2f}{plus(without_epochs)} s per epoch without BatchNorm and "
        f"{on:.2f}{plus(reference_epochs)} s with it (mean ± std over the epochs after the first): "
    )
    if noise is None:
        return lead + (
            f"{abs(gap):.2f} s {'less' if gap < 0 else 'more'} without it, with too few epochs to tell that from "
            "the run-to-run variation."
        )
    if abs(gap) <= 2 * noise:
        return lead + (
            f"the {abs(gap):.2f} s gap is within twice the larger spread ({noise:.2f} s), so no difference is shown "
            "at this length of training."
        )
    relative = abs(gap) / on if on > 0 else math.nan
    return lead + (
        f"{abs(gap):.2f} s ({relative:.0%}) {'faster' if gap < 0 else 'slower'} without BatchNorm, more than twice the "
        f"larger spread ({noise:.2f} s)"
        + (
            ": each BatchNorm layer is two passes over its activations (statistics, then the normalisation) "
            "forward and more backward, memory-bound work that removing it saves."
            if gap < 0
            else ": removing BatchNorm should save its memory-bound passes, so a slower run points to the machine's "
            "load during the runs rather than to the model."
        )
    )


def c5_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    points = pd.DataFrame(row.get("optimizer_points") or [])
    points = having(points, "final_accuracy") if not points.empty else points
    if points.empty:
        return [missing("c5_optimizers", "C5", "every optimiser recorded diverged")]
    best = points.loc[points["final_accuracy"].astype(float).idxmax()]
    text = (
        f"best of {counted(len(points), 'optimiser')}: {best['optimizer']}, {shown(best['final_accuracy'])} % top-1 "
        f"after "
        f"{counted(int(best['epochs_run']), 'epoch')}"
    )
    return [answer("c5_optimizers", "C5", text, float(best["final_accuracy"]), "%", row)]


def c6_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    text = f"without BatchNorm {shown(row.get('accuracy_mean'))} % mean top-1"
    reference = number(row.get("reference_accuracy_mean"))
    text += f" (with BatchNorm {shown(reference)} %)" if reference is not None else " (no C5 SGD run to compare)"
    off, on = number(row.get("train_s_mean")), number(row.get("reference_train_s_mean"))
    if off is not None and on is not None:
        text += f"; training {shown(off)} s vs {shown(on)} s per epoch"
    return [answer("c6_no_batchnorm", "C6", text, number(row.get("accuracy_mean")), "%", row)]


PRESENTS = (
    Presenter("c5_optimizers", ("C5",), c5_measurements, c5_headlines, qualifier="optimizer"),
    Presenter("c6_no_batchnorm", ("C6",), c6_measurements, c6_headlines),
)
