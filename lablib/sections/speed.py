"""E2's third question: why fewer MACs need not mean faster, argued from the measurements.

The frames here are E2's measurements as rows (lablib.sections.efficiency.gather): each row names its
network in words ("ResNet-18", "MobileNetV2 ×1"). Each part of the answer is one table and one
sentence, each claim judged against the numbers by the thresholds below:
- MACs against speed: the MAC ratio of the two networks against their measured speed ratio;
- memory-bound depthwise convolutions: each layer run alone (achieved GMAC/s, MACs per byte moved);
- launch count and graph depth: convolutions and operators per forward, and batch 1 against the large batch;
- precision: fp16 / bf16 against fp32, training and inference (channels_last);
- compile: torch.compile against eager, per network, precision and batch (each shape compiled once);
- how busy the device is: busy time / wall time from torch.profiler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lablib.core.progress import counted
from lablib.core.timing import NOISY_RELATIVE
from lablib.sections.headlines import number

FAR_BELOW_MAC_RATIO = 0.5  # a speed-up below half the MAC ratio is "far less than the MAC ratio"
SAME_SPEED = 0.10  # ratios within 10 % of 1: "about as fast"
DEVICE_BOUND = 0.80  # busy at least 80 % of the wall time: the device bounds the step
HOST_BOUND = 0.50  # busy at most half the wall time: the host (launching, Python) bounds it
BOUND_WORDS = {"device": "device-bound", "host": "host-bound", "both": "neither clearly: host and device both"}


@dataclass(frozen=True)
class Skipped:
    """A measurement E2 does not ask for here, and why (a precision the device lacks, compile turned off)."""

    what: str  # "training" | "inference" | "compiled inference"
    network: str  # "ResNet-18", "MobileNetV2 ×1", or "every network"
    device: str  # cpu | cuda
    precision: str  # fp32 | fp16 | bf16 | "" (every precision)
    reason: str

    def sentence(self) -> str:
        precision = f" {self.precision}" if self.precision else ""
        return f"{self.what}{precision} of {self.network} on `{self.device}`: {self.reason}"


def skipped_notes(skipped: Sequence[Skipped]) -> list[str]:
    """One line per reason and device: what is not measured there (precisions, parts, networks) and why."""
    grouped: dict[tuple[str, str, str], list[Skipped]] = {}
    for skip in skipped:
        grouped.setdefault((skip.device, skip.precision, skip.reason), []).append(skip)
    lines = []
    for (device, precision, reason), skips in grouped.items():
        parts = " and ".join(dict.fromkeys(skip.what for skip in skips))
        networks = " and ".join(dict.fromkeys(skip.network for skip in skips))
        lines.append(
            f"Not measured on `{device}`: {precision + ' ' if precision else ''}{parts} of {networks}: {reason}."
        )
    return lines


def times(ratio: float | None, decimals: int = 2) -> str:
    return "—" if ratio is None or not math.isfinite(ratio) else f"{ratio:.{decimals}f}×"


def speed_words(ratio: float) -> str:
    """'faster', 'slower' or 'about as fast' for a speed ratio (> 1: faster), SAME_SPEED around 1."""
    if ratio > 1 + SAME_SPEED:
        return "faster"
    if ratio < 1 - SAME_SPEED:
        return "slower"
    return "about as fast"


def ratio_spread(top: float, top_std: float, bottom: float, bottom_std: float) -> float | None:
    """The spread of top / bottom from each one's std (first-order propagation of relative errors)."""
    values = [number(v) for v in (top, top_std, bottom, bottom_std)]
    if any(v is None for v in values) or values[0] <= 0 or values[2] <= 0:
        return None
    return values[0] / values[2] * math.hypot(values[1] / values[0], values[3] / values[2])


def _ok(timings: pd.DataFrame) -> pd.DataFrame:
    if timings.empty or "status" not in timings:
        return timings.iloc[0:0]
    return timings[timings["status"] == "ok"]


def timing_row(
    timings: pd.DataFrame, network: str, device: str, batch: int, precision: str = "fp32", mode: str = "eager"
) -> pd.Series | None:
    """The successful timing of one case, else None."""
    ok = _ok(timings)
    rows = ok[
        (ok["network"] == network)
        & (ok["device"] == device)
        & (ok["batch"] == batch)
        & (ok["precision"] == precision)
        & (ok["mode"] == mode)
    ]
    return None if rows.empty else rows.iloc[-1]


def speed_ratio(slow: pd.Series | None, fast: pd.Series | None) -> tuple[float, float | None] | None:
    """How many times faster `fast` ran than `slow` (median over median) and that ratio's spread."""
    if slow is None or fast is None:
        return None
    ratio = float(slow["median_ms"]) / float(fast["median_ms"])
    spread = ratio_spread(slow.get("mean_ms"), slow.get("std_ms"), fast.get("mean_ms"), fast.get("std_ms"))
    return ratio, spread


# --- MACs against measured speed -----------------------------------------------------------------


def pair_speeds(timings: pd.DataFrame, reference: str, other: str, device: str, batches: Sequence[int]) -> dict:
    """batch -> (how many times faster `other` ran than `reference`, spread), fp32 eager on `device`."""
    found = {}
    for batch in batches:
        ratio = speed_ratio(timing_row(timings, reference, device, batch), timing_row(timings, other, device, batch))
        if ratio is not None:
            found[batch] = ratio
    return found


def mac_speed_sentence(
    mac_ratio: float, reference: str, other: str, timings: pd.DataFrame, device: str, large_batch: int
) -> str:
    """How many times fewer MACs `other` needs than `reference`, against how many times faster it ran."""
    speeds = pair_speeds(timings, reference, other, device, (1, large_batch))
    lead = f"{other} needs {mac_ratio:.1f}× fewer MACs per image than {reference}"
    if not speeds:
        return lead + f", but their fp32 eager timings on `{device}` are not both recorded."
    said = [
        f"{times(ratio)} as fast{'' if spread is None else f' (± {spread:.2f})'} at batch {batch}"
        for batch, (ratio, spread) in sorted(speeds.items())
    ]
    best = max(ratio for ratio, _ in speeds.values())
    verdict = (
        f": far less than the MAC ratio (below {FAR_BELOW_MAC_RATIO:.0%} of it), so the MACs do not set the pace"
        if best < FAR_BELOW_MAC_RATIO * mac_ratio
        else ": close to what the MAC ratio promises"
    )
    return f"{lead}, and measured in fp32, eager, on `{device}` it is " + " and ".join(said) + verdict + "."


def noise_sentence(timings: pd.DataFrame) -> str:
    """How many of the timings are noisy (lablib.core.timing's one noise rule), and what that means; "" if none."""
    if timings.empty or "noisy" not in timings:
        return ""
    ok = _ok(timings)
    noisy = ok["noisy"].fillna(False).astype(bool)
    if not noisy.any():
        return ""
    return (
        f"{int(noisy.sum())} of {len(ok)} timings are noisy (their 5th to 95th percentile spread exceeds "
        f"{NOISY_RELATIVE:.0%} of their median: other work ran on the machine while timing), so ratios between "
        "them are not reliable to within a few tens of percent."
    )


# --- memory-bound depthwise convolutions ---------------------------------------------------------------


def kind_summary(layers: pd.DataFrame) -> pd.DataFrame:
    """Per kind of layer: count, MACs, bytes, time, share of MACs and of time, achieved GMAC/s, MACs per byte."""
    grouped = layers.groupby("kind").agg(
        layers=("layer", "count"), macs=("macs", "sum"), bytes=("bytes", "sum"), ms=("median_ms", "sum")
    )
    grouped["mac_share"] = 100 * grouped["macs"] / grouped["macs"].sum()
    grouped["time_share"] = 100 * grouped["ms"] / grouped["ms"].sum()
    grouped["gmacs_per_s"] = grouped["macs"] / (grouped["ms"] / 1e3) / 1e9
    grouped["macs_per_byte"] = grouped["macs"] / grouped["bytes"]
    return grouped.reset_index()


def depthwise_sentence(kinds: pd.DataFrame, network: str, device: str, batch: int) -> str:
    """Depthwise against 1×1 convolutions: share of MACs and of time, GMAC/s, MACs per byte, and the verdict."""
    by_kind = kinds.set_index("kind") if not kinds.empty else kinds
    if "depthwise" not in by_kind.index or "pointwise" not in by_kind.index:
        return f"{network} has no depthwise and 1×1 convolutions to compare in its layer profile."
    depthwise, pointwise = by_kind.loc["depthwise"], by_kind.loc["pointwise"]
    slower = depthwise["gmacs_per_s"] < pointwise["gmacs_per_s"]
    verdict = (
        "they are memory-bound: with so little arithmetic per byte they wait on memory, not on the arithmetic "
        "units, and run slower per MAC"
        if slower
        else "they should be memory-bound, but here they did not run slower per MAC than the 1×1 convolutions "
        "(a small batch or a busy machine: these numbers do not confirm it)"
    )
    return (
        f"**Memory-bound depthwise convolutions.** In {network} (each layer run alone on `{device}`, batch "
        f"{batch}) the {int(depthwise['layers'])} depthwise 3×3 convolutions do {depthwise['mac_share']:.1f} % of "
        f"the MACs but take {depthwise['time_share']:.1f} % of the layer time, at {depthwise['gmacs_per_s']:.2f} "
        f"GMAC/s against {pointwise['gmacs_per_s']:.2f} GMAC/s for the 1×1 convolutions. A depthwise 3×3 does 9 "
        f"MACs per output element whatever the channel count: {depthwise['macs_per_byte']:.2f} MACs per byte moved "
        f"(1×1: {pointwise['macs_per_byte']:.2f}), so {verdict}."
    )


# --- launch count and graph depth ----------------------------------------------------------------------


def launch_sentence(
    counts: pd.DataFrame,
    busy: pd.DataFrame,
    timings: pd.DataFrame,
    reference: str,
    other: str,
    device: str,
    large_batch: int,
) -> str:
    """Convolutions and operators per forward of each network, and whether the smaller one's advantage
    shrinks at batch 1 (each launch's fixed cost is not amortised over a small layer)."""
    table = counts.set_index("network") if not counts.empty else counts
    if reference not in table.index or other not in table.index:
        return "The layer counts of the two networks are not both recorded."
    operators = {}
    if not busy.empty:
        forward = busy[(busy["mode"] == "inference") & (busy["batch"] == 1)].set_index("network")
        operators = {name: number(forward.loc[name, "operators_per_step"]) for name in forward.index}
    per_conv = {
        name: table.loc[name, "macs_per_image"] / max(int(table.loc[name, "convolutions"]), 1) for name in table.index
    }

    def described(name: str) -> str:
        ops = operators.get(name)
        return (
            f"{name} runs {int(table.loc[name, 'convolutions'])} convolutions in sequence (about "
            f"{per_conv[name] / 1e6:.2f} M MACs per image each)"
            + (f" and {ops:.0f} operators per forward at batch 1" if ops is not None else "")
        )

    speeds = pair_speeds(timings, reference, other, device, (1, large_batch))
    if 1 in speeds and large_batch in speeds:
        small, large = speeds[1][0], speeds[large_batch][0]
        shown = (
            f"as here: {other}'s advantage is {times(small)} at batch 1 against {times(large)} at batch {large_batch}"
            if small < large
            else f"not visible here: {other}'s advantage is {times(small)} at batch 1 and {times(large)} at batch "
            f"{large_batch}"
        )
    else:
        shown = "the two batches are not both timed"
    return (
        f"**Launch count and graph depth.** {described(other)}; {described(reference)}. Each operator is a kernel "
        "launch (plus its BatchNorm and activation) with a fixed cost that a small layer cannot amortise, and a "
        "deeper graph runs more of them one after the other; this should hurt most at batch 1 (" + shown + ")."
    )


# --- precision ---------------------------------------------------------------------------------------


def precision_inference_table(
    timings: pd.DataFrame, networks: Sequence[str], skipped: Sequence[Skipped] = ()
) -> pd.DataFrame:
    """Eager inference of `networks` per device, precision and batch: median, images/s, speed against fp32,
    with a row for each precision not measured and why."""
    columns = ["network", "device", "precision", "batch", "median_ms", "images_per_s", "speedup_vs_fp32", "status"]
    rows = []
    if not timings.empty:
        chosen = timings[(timings["mode"] == "eager") & timings["network"].isin(list(networks))]
        for row in chosen.to_dict("records"):
            ok = row["status"] == "ok"
            ratio = speed_ratio(timing_row(timings, row["network"], row["device"], row["batch"]), pd.Series(row))
            rows.append(
                {
                    **{column: row.get(column) for column in columns[:4]},
                    "median_ms": row.get("median_ms") if ok else None,
                    "images_per_s": row.get("images_per_s") if ok else None,
                    "speedup_vs_fp32": ratio[0] if ok and ratio else None,
                    "status": "ok" if ok else f"{row['status']}: {row.get('note', '')}",
                }
            )
    for skip in skipped:
        if skip.what == "inference" and skip.network in networks:
            rows.append(
                {
                    "network": skip.network,
                    "device": skip.device,
                    "precision": skip.precision,
                    "status": "not measured",
                }
            )
    return pd.DataFrame(rows, columns=columns)


def missing_sentence(skipped: Sequence[Skipped], what: str, lead: str) -> str:
    """'Not trained: fp16 on `cpu` (why).' for the skipped entries of one kind; "" when there are none."""
    found = {(skip.precision, skip.device, skip.reason) for skip in skipped if skip.what == what}
    if not found:
        return ""
    return f" {lead}: " + "; ".join(f"{p} on `{d}` ({reason})" for p, d, reason in sorted(found)) + "."


def precision_inference_sentence(table: pd.DataFrame, large_batch: int, skipped: Sequence[Skipped] = ()) -> str:
    """fp16 and bf16 against fp32, per network and device, at batch 1 and the large batch; what was not timed."""
    low = table[(table["precision"] != "fp32")]
    measured = low.dropna(subset=["speedup_vs_fp32"])
    missing = missing_sentence(skipped, "inference", "Not timed")
    if measured.empty:
        return "**Precision (inference, channels_last).** Only fp32 was timed." + missing
    said = []
    for (network, device, precision), rows in measured.groupby(["network", "device", "precision"], sort=False):
        by_batch = rows.set_index("batch")["speedup_vs_fp32"]
        parts = [f"{times(by_batch[b])} at batch {b}" for b in (1, large_batch) if b in by_batch.index]
        said.append(f"{network} in {precision} on `{device}` runs {' and '.join(parts)} fp32's speed")
    slow = measured[measured["speedup_vs_fp32"] < 1 - SAME_SPEED]
    why = (
        " Slower than fp32 means the device has no fast kernels for that precision and that layer (depthwise "
        "convolutions gain nothing from tensor cores) while the casts and format changes add memory traffic."
        if not slow.empty
        else " A low precision pays off where the device has fast kernels for it (tensor cores on a GPU, "
        "AVX512-BF16 or AMX on a CPU) and the layer is compute-bound."
    )
    return "**Precision (inference, channels_last).** " + "; ".join(said) + "." + why + missing


def precision_training_table(trainings: pd.DataFrame, skipped: Sequence[Skipped] = ()) -> pd.DataFrame:
    """One row per network and precision: epoch time, images/s, test top-1 and the speed against fp32's
    training, with a row for each precision not measured and why."""
    columns = [
        "network",
        "precision",
        "epoch_s_mean",
        "images_per_s_mean",
        "test_accuracy",
        "speedup_vs_fp32",
        "outcome",
    ]
    rows = []
    for row in trainings.to_dict("records"):
        reference = trainings[(trainings["network"] == row["network"]) & (trainings["precision"] == "fp32")]
        fp32 = number(reference.iloc[0]["epoch_s_mean"]) if not reference.empty else None
        mine = number(row.get("epoch_s_mean"))
        rows.append(
            {
                **{c: row.get(c) for c in columns[:5]},
                "speedup_vs_fp32": fp32 / mine if fp32 and mine else None,
                "outcome": "diverged" if row.get("diverged") is True or row.get("diverged") == 1 else "trained",
            }
        )
    for skip in skipped:
        if skip.what == "training":
            rows.append({"network": skip.network, "precision": skip.precision, "outcome": "not measured"})
    return pd.DataFrame(rows, columns=columns)


def precision_training_sentence(table: pd.DataFrame, device: str, skipped: Sequence[Skipped] = ()) -> str:
    """Each low precision's training speed against fp32's, per network, and what was not trained and why."""
    measured = table[(table["precision"] != "fp32")].dropna(subset=["speedup_vs_fp32"])
    said = [
        f"{row['network']} trains in {row['precision']} at {times(row['speedup_vs_fp32'])} fp32's speed "
        f"({speed_words(row['speedup_vs_fp32'])}; {number(row['epoch_s_mean']):.2f} s per epoch, test top-1 "
        f"{_percent(row['test_accuracy'])})"
        for row in measured.to_dict("records")
    ]
    text = "**Precision (training, fast engine).** "
    text += ("; ".join(said) + ".") if said else f"No precision but fp32 was trained on `{device}`."
    return text + missing_sentence(skipped, "training", "Not trained")


def _percent(value) -> str:
    value = number(value)
    return "—" if value is None else f"{value:.2f} %"


# --- compile --------------------------------------------------------------------------------------------


def compile_table(timings: pd.DataFrame) -> pd.DataFrame:
    """Compiled against eager, per network, device, precision and batch: both medians, the speed-up, the
    first call (the compile) and the graphs compiled for the shape and while timed."""
    columns = [
        "network",
        "device",
        "precision",
        "batch",
        "eager_ms",
        "compiled_ms",
        "speedup_vs_eager",
        "first_call_s",
        "graphs_compiled",
        "recompiles_while_timed",
        "status",
    ]
    if timings.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for row in timings[timings["mode"] == "compiled"].to_dict("records"):
        eager = timing_row(timings, row["network"], row["device"], row["batch"], row["precision"])
        ok = row["status"] == "ok"
        rows.append(
            {
                **{c: row.get(c) for c in ("network", "device", "precision", "batch")},
                "eager_ms": None if eager is None else eager["median_ms"],
                "compiled_ms": row.get("median_ms") if ok else None,
                "speedup_vs_eager": (eager["median_ms"] / row["median_ms"]) if ok and eager is not None else None,
                "first_call_s": row.get("first_call_s") if ok else None,
                "graphs_compiled": row.get("graphs_compiled"),
                "recompiles_while_timed": row.get("recompiles_while_timed"),
                "status": "ok" if ok else f"{row['status']}: {row.get('note', '')}",
            }
        )
    return pd.DataFrame(rows, columns=columns)


def compile_sentence(table: pd.DataFrame, not_measured: Sequence[str] = ()) -> str:
    """Per network and precision: compiled speed against eager at each batch; or why compile was not measured."""
    measured = table.dropna(subset=["speedup_vs_eager"]) if not table.empty else table
    text = "**Compile.** "
    if measured.empty:
        why = "; ".join(not_measured) or "no compiled timing is recorded"
        return text + f"Compiled against eager was not measured ({why})."
    said = []
    for (network, device, precision), rows in measured.groupby(["network", "device", "precision"], sort=False):
        parts = [f"{times(r['speedup_vs_eager'])} eager at batch {int(r['batch'])}" for r in rows.to_dict("records")]
        said.append(f"compiled {network} ({precision}, `{device}`) is " + " and ".join(parts))
    slower = measured[measured["speedup_vs_eager"] < 1 - SAME_SPEED]
    text += "; ".join(said) + "."
    if not slower.empty:
        names = sorted(set(slower["network"]))
        text += (
            f" Compiled is slower for {', '.join(names)} in some cases: fusing BatchNorm and activations saves "
            "little when each layer is small, and the compiled code's guards and calls cost time a tiny model "
            "cannot hide."
        )
    recompiled = number(pd.to_numeric(table["recompiles_while_timed"], errors="coerce").max())
    graphs = pd.to_numeric(table["graphs_compiled"], errors="coerce").dropna()
    per_shape = counted(graphs.max(), "graph") if not graphs.empty else "graphs not recorded"
    text += (
        f" Each input shape was compiled once (dynamic=False, {per_shape} per shape) and warmed up before timing"
        + (
            "; no timed call recompiled."
            if recompiled == 0
            else f"; {counted(recompiled, 'graph')} compiled while timed."
        )
    )
    if not_measured:
        text += " Not measured: " + "; ".join(not_measured) + "."
    return text


# --- how busy the device is ----------------------------------------------------------------------------------


def bound(fraction: float | None) -> str:
    """Which side bounds a step: 'device' (busy >= DEVICE_BOUND), 'host' (<= HOST_BOUND), else 'both'."""
    fraction = number(fraction)
    if fraction is None:
        return "—"
    if fraction >= DEVICE_BOUND:
        return "device"
    if fraction <= HOST_BOUND:
        return "host"
    return "both"


def busy_table(busy: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "network",
        "mode",
        "batch",
        "wall_ms_per_step",
        "busy_ms_per_step",
        "busy_fraction",
        "operators_per_step",
        "kernels_per_step",
        "bound",
    ]
    if busy.empty:
        return pd.DataFrame(columns=columns)
    table = busy.assign(bound=busy["busy_fraction"].map(bound))
    return table.reindex(columns=columns).reset_index(drop=True)


def busy_meaning(device: str) -> str:
    """What the busy fraction is on this device, and what a GPU figure needs."""
    if device == "cuda":
        return (
            "On the GPU, busy is the time some kernel or copy runs on it (the union of their intervals in the "
            "profiler's trace); the rest of the wall time the GPU waits for the host to launch work."
        )
    return (
        "On the CPU the device is the host itself: busy is the time the process spends inside ATen operators "
        "(the tensor arithmetic), the rest is Python and the framework between operators. The GPU's figure (its "
        'kernels\' time over the wall time, the "GPU idle" of Nsight) needs a GPU: not measured here.'
    )


def busy_sentence(table: pd.DataFrame, device: str) -> str:
    """Busy fraction per network, mode and batch, and which side bounds each."""
    if table.empty:
        return "**How busy the device is.** No profile is recorded."
    said = [
        f"{row['network']} {row['mode']} at batch {int(row['batch'])}: {100 * float(row['busy_fraction']):.0f} % busy "
        f"({BOUND_WORDS.get(row['bound'], row['bound'])})"
        for row in table.to_dict("records")
        if number(row.get("busy_fraction")) is not None
    ]
    hosts = table[table["bound"] == "host"]
    verdict = (
        f" Where the step is host-bound the device idles between small operators, so fewer MACs cannot make it "
        f"faster: the {counted(len(hosts), 'host-bound case')} here are "
        + ", ".join(f"{r['network']} {r['mode']} at batch {int(r['batch'])}" for r in hosts.to_dict("records"))
        + "."
        if not hosts.empty
        else f" No case is host-bound (busy at most {HOST_BOUND:.0%}): the device's work sets the pace here."
    )
    return (
        f"**How busy the device is** (`{device}`, busy time / wall time of the profiled steps; device-bound from "
        f"{DEVICE_BOUND:.0%}, host-bound up to {HOST_BOUND:.0%}): "
        + "; ".join(said)
        + "."
        + verdict
        + " "
        + busy_meaning(device)
    )
