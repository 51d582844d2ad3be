"""Tables and figure captions as a reader sees them: headers in words with units, fixed decimals, no index.

    present(frame)                     -> a pandas Styler: the table every notebook displays
    present(frame, ["epoch", "loss"])  -> only those columns, in that order
    figure_caption(what, config, device, tag, data) -> the caption displayed under a plot

QUANTITIES is the one table of the lab's quantities: a record column ("data_s") -> its header in
words with its unit ("data loading (s)") and its decimals. A column that is not in it keeps its
name, which must then already be words (no underscore): a raw record name never reaches a reader.

How the output travels (for the report's stitcher):
- present() returns a PresentedTable (a pandas Styler) whose HTML is
  `<table ... class="dataframe" data-lablib="presented">` with the index hidden, every cell already a
  string: thousands separators ("11,173,962"), the quantity's decimals, MISSING ("—") for NaN/None,
  "yes"/"no" for booleans. Number columns carry the CSS class `lab-number` on their cells and are
  right-aligned by the Styler's own CSS, text columns left-aligned. The exact attribute
  class="dataframe" lets the stitcher's DataFrame-to-LaTeX step treat it as a table; its text/plain
  form is the table as text without the index (never "<Styler object>").
- figure_caption() returns a Caption whose Markdown starts with FIGURE_PREFIX ("**Figure:** ") and
  whose display metadata is {"lablib": "figure-caption"} under "text/markdown"; the stitcher numbers
  it by replacing the prefix with "**Figure N:** ".
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

from lablib.core.errors import LabError

MISSING = "—"  # what a table shows for a value that was not measured (NaN, None)
FIGURE_PREFIX = "**Figure:** "  # every caption starts with it; the stitcher numbers figures by it
CAPTION_METADATA = {"lablib": "figure-caption"}  # display metadata of a caption's Markdown
TABLE_ATTRIBUTES = 'class="dataframe" data-lablib="presented"'  # the <table> tag's attributes of every presented table
PRESENTED_MARK = 'data-lablib="presented"'  # how a presented table is recognised in HTML
NUMBER_CLASS = "lab-number"  # the CSS class of a number column's cells
FULL_CIFAR = (50_000, 10_000)  # the lab's training and test images


@dataclass(frozen=True)
class Quantity:
    header: str  # the column's header in words, with its unit
    decimals: int | None = None  # digits after the point; None: integers or text as they are
    scale: float = 1.0  # multiply before showing (a fraction shown in %)


def _q(header: str, decimals: int | None = None, scale: float = 1.0) -> Quantity:
    return Quantity(header, decimals, scale)


SECONDS, MILLISECONDS, ACCURACY, LOSS, RATIO = 3, 3, 2, 4, 2  # decimals per kind of quantity

QUANTITIES: dict[str, Quantity] = {
    # epochs and their times (lablib.core.train.EpochRecord, summarise_epochs)
    "epoch": _q("epoch"),
    "loss": _q("training loss", LOSS),
    "accuracy": _q("top-1 training accuracy (%)", ACCURACY),
    "data_s": _q("data loading (s)", SECONDS),
    "train_s": _q("training (s)", SECONDS),
    "other_s": _q("other (s)", SECONDS),
    "total_s": _q("epoch total (s)", SECONDS),
    "images": _q("images"),
    "batches": _q("batches"),
    "images_per_s": _q("images/s", 0),
    "diverged": _q("diverged"),
    "epochs_run": _q("epochs run"),
    "epochs": _q("epochs"),
    "data_s_total": _q("data loading, total (s)", SECONDS),
    "train_s_total": _q("training, total (s)", SECONDS),
    "epoch_s_total": _q("epochs, total (s)", SECONDS),
    "data_s_mean": _q("data loading per epoch (s)", SECONDS),
    "train_s_mean": _q("training per epoch (s)", SECONDS),
    "epoch_s_mean": _q("epoch time, mean (s)", SECONDS),
    "epoch_s": _q("epoch time (s)", SECONDS),
    "images_per_s_mean": _q("images/s", 0),
    "final_loss": _q("last-epoch loss", LOSS),
    "final_accuracy": _q("last-epoch top-1 (%)", ACCURACY),
    "loss_mean": _q("loss, mean over epochs", LOSS),
    "accuracy_mean": _q("top-1, mean over epochs (%)", ACCURACY),
    "data_share": _q("data share of the epoch (%)", 1, 100.0),
    "data_ms_per_batch": _q("data loading per batch (ms)", 2),
    "train_ms_per_batch": _q("training per batch (ms)", 2),
    # settings and who ran
    "workers": _q("workers"),
    "optimizer": _q("optimiser"),
    "outcome": _q("outcome"),
    "run": _q("run"),
    "target_device": _q("device"),
    "device": _q("device"),
    "device_name": _q("device name"),
    "measured": _q("measured"),
    "model": _q("model"),
    "family": _q("family"),
    "width": _q("width multiplier", 2),
    "status": _q("status"),
    "note": _q("note"),
    # inference and latency (lablib.sections.torchscript, latency, libtorch, efficiency)
    "runtime": _q("runtime"),
    "program": _q("program"),
    "mean_ms": _q("mean (ms)", MILLISECONDS),
    "median_ms": _q("median (ms)", MILLISECONDS),
    "std_ms": _q("std (ms)", MILLISECONDS),
    "p5_ms": _q("5th percentile (ms)", MILLISECONDS),
    "p10_ms": _q("10th percentile (ms)", MILLISECONDS),
    "p90_ms": _q("90th percentile (ms)", MILLISECONDS),
    "p95_ms": _q("95th percentile (ms)", MILLISECONDS),
    "min_ms": _q("min (ms)", MILLISECONDS),
    "max_ms": _q("max (ms)", MILLISECONDS),
    "runs": _q("timed runs"),
    "speedup_vs_eager": _q("speed-up vs eager (×)", RATIO),
    "speedup_vs_fp32": _q("speed-up vs fp32 (×)", RATIO),
    "max_abs_diff": _q("max abs difference", 6),
    "noisy": _q("noisy timing"),
    "prepare_s": _q("preparation (s)", SECONDS),
    "threads": _q("CPU threads"),
    "accuracy_eager": _q("PyTorch top-1 (%)", ACCURACY),
    "accuracy_scripted": _q("TorchScript top-1 (%)", ACCURACY),
    "accuracy_difference": _q("difference (points)", ACCURACY),
    "same_accuracy": _q("same top-1"),
    "cpu_threads": _q("CPU threads"),
    "warmup_runs": _q("warm-up runs"),
    "timed_runs": _q("timed runs"),
    "test_accuracy": _q("test top-1 accuracy (%)", ACCURACY),
    "test_loss": _q("test loss", LOSS),
    "train_loss": _q("last-epoch training loss", LOSS),
    "train_accuracy": _q("last-epoch top-1 training accuracy (%)", ACCURACY),
    "precision": _q("precision"),
    "mode": _q("mode"),
    "batch": _q("batch (images)"),
    "first_call_s": _q("first call (s)", SECONDS),
    # models, layers and their cost
    "parameters": _q("parameters"),
    "macs": _q("MACs per image"),
    "mmacs": _q("MMACs per image", 1),
    "gmacs": _q("GMACs per image", 3),
    "convs": _q("convolutions"),
    "depthwise_convs": _q("depthwise convolutions"),
    "layers": _q("layers"),
    "macs_per_conv": _q("MACs per convolution", 0),
    "kind": _q("kind"),
    "layer": _q("layer"),
    "mac_share": _q("share of MACs (%)", 1),
    "time_share": _q("share of time (%)", 1),
    "gmacs_per_s": _q("achieved GMAC/s", 1),
    "macs_per_byte": _q("MACs per byte moved", 1),
    "bytes": _q("bytes moved"),
    "ms": _q("time (ms)", MILLISECONDS),
    "tensors": _q("tensors"),
    "elements": _q("elements"),
    "name": _q("name"),
    "in_channels": _q("input channels"),
    "out_channels": _q("output channels"),
    "kernel": _q("kernel"),
    "stride": _q("stride"),
    "shortcut": _q("shortcut"),
    "module": _q("module"),
    "type": _q("type"),
    "input_shape": _q("input shape"),
    "output_shape": _q("output shape"),
    "count": _q("count"),
    "step": _q("step"),
    "operation": _q("operation"),
    # efficient blocks (lablib.sections.efficiency, speed)
    "network": _q("network"),
    "drop_points": _q("drop vs ResNet-18 (points)", ACCURACY),
    "mark": _q("mark"),
    "latency_ms": _q("latency, batch 1 (ms)", MILLISECONDS),
    "eager_ms": _q("eager, median (ms)", MILLISECONDS),
    "compiled_ms": _q("compiled, median (ms)", MILLISECONDS),
    "graphs_compiled": _q("graphs compiled"),
    "recompiles_while_timed": _q("graphs compiled while timed"),
    "convolutions": _q("convolutions"),
    "depthwise_convolutions": _q("depthwise convolutions"),
    "macs_per_image": _q("MACs per image"),
    "wall_ms_per_step": _q("wall time per step (ms)", MILLISECONDS),
    "busy_ms_per_step": _q("busy per step (ms)", MILLISECONDS),
    "busy_fraction": _q("busy (%)", 1, 100.0),
    "operators_per_step": _q("operators per step", 0),
    "kernels_per_step": _q("GPU kernels per step", 0),
    "bound": _q("bound by"),
    # profiler (lablib.sections.profiling)
    "self_cpu_ms": _q("self CPU time (ms)", MILLISECONDS),
    "self_cpu_percent": _q("self CPU time (%)", 1),
    "cpu_total_ms": _q("CPU total (ms)", MILLISECONDS),
    "self_cuda_ms": _q("self CUDA time (ms)", MILLISECONDS),
    "self_cuda_percent": _q("self CUDA time (%)", 1),
    "cuda_total_ms": _q("CUDA total (ms)", MILLISECONDS),
    "calls": _q("calls"),
    "range": _q("range"),
    "total_ms": _q("total over the active steps (ms)", 2),
    "per_step_ms": _q("per step (ms)", 2),
    "phase": _q("schedule phase"),
    "data_ms": _q("data loading (ms)", 2),
    "train_ms": _q("training (ms)", 2),
    # torch.compile (lablib.sections.compiled; "steady" headers name their epochs there)
    "compile_mode": _q("compile mode"),
    "cold_compile": _q("cold compile"),
    "first_epoch_train_s": _q("training, epoch 1 (s)", SECONDS),
    "steady_train_s": _q("training, steady epochs (s)", SECONDS),
    "steady_train_s_std": _q("training, std over the steady epochs (s)", SECONDS),
    "speedup_train_vs_eager": _q("training speed-up vs eager (×)", RATIO),
    "first_epoch_s": _q("epoch total, epoch 1 (s)", SECONDS),
    "steady_epoch_s": _q("epoch total, steady epochs (s)", SECONDS),
    "steady_epoch_s_std": _q("epoch total, std over the steady epochs (s)", SECONDS),
    "speedup_epoch_vs_eager": _q("epoch-total speed-up vs eager (×)", RATIO),
    "compile_s": _q("compile (s)", 2),
    "compiles": _q("compiles"),
    "recompiles": _q("recompiles"),
    "first_step_s": _q("first step (s)", SECONDS),
    "median_step_s": _q("median step of epoch 1 (s)", 4),
    # fast training (lablib.sections.fast)
    "batch_size": _q("batch (images)"),
    "lr": _q("learning rate", 4),
    "math_precision": _q("arithmetic"),
    "epoch_images": _q("images per epoch"),
    "epoch_s_std": _q("epoch time, std after epoch 1 (s)", SECONDS),
    "epoch1_s": _q("epoch 1 (s)", SECONDS),
    "full_epoch_s": _q("50,000-image epoch, derived (s)", SECONDS),
    "achieved_tflops": _q("achieved TFLOP/s", 3),
    "peak_tflops": _q("datasheet peak TFLOP/s", 1),
    "mfu": _q("MFU (% of the peak)", 1, 100.0),
    "lower_bound_s": _q("lower bound at the peak (s)", SECONDS),
}


# A header already in words takes its decimals from its unit (the same decimals as the record columns).
UNIT_DECIMALS = {"(s)": SECONDS, "(ms)": MILLISECONDS, "(%)": ACCURACY, "%": ACCURACY, "(×)": RATIO, "(MB)": 2}
DEFAULT_DECIMALS = 3  # a number column with neither a known name nor a unit


def quantity(column: Any) -> Quantity:
    """The Quantity of a record column; a column not in QUANTITIES must already read as words.

    A header in words is looked up among QUANTITIES' headers ("images/s"), then by the unit it ends
    with ("C2.1 data-loading (s)" -> seconds' decimals); otherwise numbers get DEFAULT_DECIMALS.
    """
    name = str(column)
    if name in QUANTITIES:
        return QUANTITIES[name]
    if "_" in name:
        raise LabError(
            f"table column {name!r} is a record name without a header in words; "
            "add it to lablib.sections.tables.QUANTITIES (header with its unit, decimals) or rename it."
        )
    for spec in QUANTITIES.values():
        if spec.header == name:
            return Quantity(name, spec.decimals)
    for unit, digits in UNIT_DECIMALS.items():
        if name.endswith(unit):
            return Quantity(name, digits)
    return Quantity(name, None)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: not one missing value
        return False


def format_value(value: Any, decimals: int | None = None, scale: float = 1.0) -> str:
    """One cell as text: thousands separators, `decimals` digits, MISSING for NaN/None, yes/no for booleans,
    a tuple of integers as a shape ("4 × 512"), a list as its items joined by commas."""
    if isinstance(value, tuple) and value and all(isinstance(v, numbers.Integral) for v in value):
        return " × ".join(str(int(v)) for v in value)  # a shape: 4 × 512
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(item, decimals, scale) for item in value)
    if _missing(value):
        return MISSING
    if isinstance(value, bool) or (hasattr(value, "dtype") and str(getattr(value, "dtype", "")) == "bool"):
        return "yes" if bool(value) else "no"
    if isinstance(value, numbers.Integral) and decimals is None and scale == 1.0:
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        number = float(value) * scale
        if not math.isfinite(number):
            return MISSING if math.isnan(number) else ("∞" if number > 0 else "−∞")
        if decimals is None:  # a column of no known quantity: whole numbers as such, others DEFAULT_DECIMALS
            return f"{number:,.0f}" if number.is_integer() else f"{number:,.{DEFAULT_DECIMALS}f}"
        return f"{number:,.{decimals}f}"
    return str(value)


def _fraction(value: Any) -> bool:
    """A float that is not a whole number (so its column needs decimals)."""
    return isinstance(value, float) and math.isfinite(value) and not value.is_integer()


def _is_number_column(values: pd.Series) -> bool:
    present = [v for v in values if not _missing(v)]
    return bool(present) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present)


def _header(column: Any) -> str:
    if isinstance(column, tuple):  # a pivot's MultiIndex column: its levels in words, joined
        return " · ".join(str(part) for part in column if str(part))
    return quantity(column).header


def presented_text(
    frame: pd.DataFrame,
    columns: Sequence[Any] | None = None,
    headers: Mapping[Any, str] | None = None,
    values: str | None = None,
    decimals: Mapping[Any, int] | None = None,
) -> tuple[pd.DataFrame, list[bool]]:
    """The table as strings with its headers in words, and which of its columns hold numbers.

    `columns` chooses and orders the columns (a missing one is an error naming it); `headers` gives a
    header for a column that is not one of QUANTITIES (or overrides one); `values` names the quantity of
    every cell that is not in a text column (a pivot of "median_ms": its columns are devices and modes);
    `decimals` overrides a column's decimals. The index is dropped unless it is named (then it becomes
    the first column).
    """
    table = frame.copy()
    if table.index.name is not None or any(name is not None for name in table.index.names[1:]):
        table = table.reset_index()
    if columns is not None:
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise LabError(f"columns {absent} are not in the table (it has {list(table.columns)}).")
        table = table[list(columns)]
    headers = dict(headers or {})
    decimals = dict(decimals or {})
    shown: dict[str, list[str]] = {}
    numeric: list[bool] = []
    for column in table.columns:
        series = table[column]
        known = not isinstance(column, tuple) and str(column) in QUANTITIES
        if known:
            spec = QUANTITIES[str(column)]
        elif values is not None:  # a pivot's value column: the values' quantity under the column's words
            measure = QUANTITIES[values]
            spec = Quantity(_header(column), measure.decimals, measure.scale)
        else:
            spec = Quantity(headers[column]) if column in headers else quantity(column)
        if column in headers:
            spec = Quantity(headers[column], spec.decimals, spec.scale)
        if column in decimals:
            spec = Quantity(spec.header, decimals[column], spec.scale)
        elif spec.decimals is None and any(_fraction(v) for v in series):  # one decimals for the whole column
            spec = Quantity(spec.header, DEFAULT_DECIMALS, spec.scale)
        header = spec.header
        while header in shown:  # two columns may share words ("device"); keep both
            header += " "
        shown[header] = [format_value(v, spec.decimals, spec.scale) for v in series]
        numeric.append(_is_number_column(series))
    return pd.DataFrame(shown), numeric


class PresentedTable(Styler):
    """A Styler whose text/plain form is the table itself (what a PDF or a terminal shows without HTML)."""

    def __repr__(self) -> str:
        return self.data.to_string(index=False)


def present(
    frame: pd.DataFrame,
    columns: Sequence[Any] | None = None,
    headers: Mapping[Any, str] | None = None,
    values: str | None = None,
    decimals: Mapping[Any, int] | None = None,
):
    """The table a notebook displays: headers in words with units, fixed decimals, no index.

    Returns a PresentedTable, a pandas Styler (its HTML: TABLE_ATTRIBUTES, index hidden, number columns
    right-aligned with class NUMBER_CLASS); `.data` is the table as strings. Arguments as presented_text.
    """
    text, numeric = presented_text(frame, columns, headers, values, decimals)
    # The Styler's element ids come from the table's content, not a random uuid: the same records give the
    # same HTML, so an unchanged report stays unchanged (its digest) and notebook outputs are reproducible.
    uuid = hashlib.sha1(text.to_csv(index=False).encode() + repr(numeric).encode()).hexdigest()[:10]
    styler = PresentedTable(text, uuid=uuid).hide(axis="index").set_table_attributes(TABLE_ATTRIBUTES)
    styles = [
        {"selector": "th", "props": "text-align: left;"},
        {"selector": "td", "props": "text-align: left;"},
        {"selector": f"td.{NUMBER_CLASS}", "props": "text-align: right;"},
    ]
    styles += [
        {"selector": f"th.col{position}", "props": "text-align: right;"}
        for position, is_number in enumerate(numeric)
        if is_number
    ]
    styler = styler.set_table_styles(styles)
    number_columns = [text.columns[i] for i, is_number in enumerate(numeric) if is_number]
    if number_columns:
        classes = pd.DataFrame("", index=text.index, columns=text.columns)
        classes[number_columns] = NUMBER_CLASS
        styler = styler.set_td_classes(classes)
    return styler


def transposed(frame: pd.DataFrame, label: str, value: str) -> pd.DataFrame:
    """A one-row table as two columns (`label`: the headers in words, `value`: the row's values)."""
    if len(frame) != 1:
        raise LabError(f"transposed() takes a one-row table; this one has {len(frame)} rows.")
    row = frame.iloc[0]
    return pd.DataFrame({label: [_header(c) for c in frame.columns], value: list(row.values)})


# --- figure captions -------------------------------------------------------------------------------


class Caption:
    """A figure's caption as Markdown, with metadata that marks it (see the module docstring)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self):
        return self.text, dict(CAPTION_METADATA)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:  # the text/plain form: the caption itself
        return self.text


def data_phrase(config, data=None) -> str:
    """Where the images came from and how many: "CIFAR-10 (cifar10-jpg.zip), 256 of 50,000 training images"."""
    source = getattr(data, "source", None) or getattr(config, "data", "")
    name = Path(str(source)).name if source else "unknown source"
    family = "CIFAR-10" if (getattr(data, "channels", 3) == 3) else "MNIST"
    if data is not None and getattr(data, "train_images", None) is not None:  # a measurement's DataFacts
        train, test = int(data.train_images), int(data.test_images or 0)
    elif data is not None and hasattr(data, "train"):  # a loaded DataBundle
        train, test = len(data.train), len(data.test)
    else:
        train = config.limit_train or FULL_CIFAR[0]
        test = config.limit_test or FULL_CIFAR[1]
    label = family if name.lower() in ("cifar10", "mnist") else f"{family} ({name})"
    if family == "CIFAR-10" and (train, test) == FULL_CIFAR:
        return f"{label}, all {train:,} training and {test:,} test images"
    return f"{label}, {train:,} training and {test:,} test images"


def figure_caption(what: str, config, device, tag: str, data=None, training: bool = True) -> Caption:
    """The caption under a plot: what it shows, on which device, the data (source, subset) and the profile.

    "**Figure:** Time per epoch. Device: cpu; data: CIFAR-10 (cifar10-jpg.zip), 256 training and 128 test
    images; 5 epochs, batch 128; profile: quick." `device` is a torch.device, a device type or a description;
    `training` False leaves out the epochs and batch (a figure of inference, not of a training).
    """
    what = what.strip().rstrip(".")
    if not what:
        raise LabError("figure_caption: say what the figure shows (got an empty text).")
    where = getattr(device, "type", None) or str(device)
    parts = [f"device: {where}", f"data: {data_phrase(config, data)}"]
    epochs = getattr(config, "epochs", None)
    if training and epochs:
        parts.append(f"{epochs} epoch{'s' if epochs != 1 else ''}, batch {config.batch_size}")
    parts.append(f"profile: {tag}" if tag else "no profile tag")
    text = "; ".join(parts)
    return Caption(f"{FIGURE_PREFIX}{what[0].upper()}{what[1:]}. {text[0].upper()}{text[1:]}.")
