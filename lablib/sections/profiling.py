"""P-2025-XC (extra credit: the profiler): a Chrome trace of the lab's training steps and their top operators.

The section presents one "profile" measurement (lablib.core.profiler: torch.profiler over wait + warm-up
+ active steps of the lab's loop, the loader's wait recorded as the named range "data_loading" and each
step as "train_step") and the model's "counts" (lablib.core.counts: its forward MACs, which say what the
convolutions should cost). The figures, tables and sentences are computed here from those records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from lablib.core.config import config_from_params
from lablib.core.counts import counts_request_for
from lablib.core.errors import ConfigError
from lablib.core.profiler import DATA_RANGE, RANGES, STEP_RANGE, profile_request
from lablib.core.progress import counted
from lablib.core.store import Measured
from lablib.sections.headlines import Headline, answer, latest, number, shown
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.workers import choose_workers

DATA_BOUND_SHARE = 0.2  # data loading at or above this share of the step: input is the bottleneck
CONVOLUTIONS_DOMINATE = 50.0  # % of self CPU time in convolution operators above which they dominate
TOP = 15  # operators shown by default
NO_CUDA_TABLE = "*No CUDA activity: the self CUDA table needs a GPU.*"


def p25_profiler_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The profile of the notebook's schedule and settings, and the model's counts."""
    workers, note = choose_workers(params, recorded)
    config = config_from_params({**params, "workers": workers})
    request = profile_request(
        config, int(params.get("wait", 1)), int(params.get("warmup", 1)), int(params.get("active", 5))
    )
    return Needs((request, counts_request_for(config.data)), (note,))


def parts(measured: list[Measured]) -> tuple[Measured, Measured]:
    """(the profile, the counts) among a section's measurements."""
    found = {item.request.kind: item for item in measured}
    return found["profile"], found["counts"]


# --- the operator table ----------------------------------------------------------------------


def top_operators(
    table: pd.DataFrame, by: str = "self_cpu_ms", count: int = TOP, include_ranges: bool = False
) -> pd.DataFrame:
    """The `count` operators with the most `by` time; our ranges and the profiler's steps left out unless asked."""
    if by not in table:
        raise ConfigError(f"by={by!r} is not a column of the operator table; expected one of {list(table.columns)}.")
    ours = table["name"].isin(RANGES) | table["name"].str.startswith("ProfilerStep")  # ranges, not operators
    rows = table if include_ranges else table[~ours]
    return rows.sort_values(by, ascending=False).head(count).reset_index(drop=True)


def share_of(table: pd.DataFrame, pattern: str, column: str = "self_cpu_ms") -> float:
    """Percentage of `column` (summed over operators, our ranges excluded) in operators named like `pattern`."""
    rows = top_operators(table, column, count=len(table))
    total = rows[column].sum()
    if total <= 0:
        return float("nan")
    return 100.0 * rows.loc[rows["name"].str.contains(pattern, regex=False), column].sum() / total


def operator_view(table: pd.DataFrame, by: str = "self_cpu_ms", top: int = TOP) -> pd.DataFrame:
    """The top operators as the section's table shows them: name, calls, self time (ms and %), total time."""
    rows = top_operators(table, by, top)
    if by == "self_cuda_ms":
        return rows.reindex(columns=["name", "calls", "self_cuda_ms", "self_cuda_percent", "cuda_total_ms"])
    return rows.reindex(columns=["name", "calls", "self_cpu_ms", "self_cpu_percent", "cpu_total_ms"])


def cuda_view(table: pd.DataFrame, device_type: str, top: int = TOP):
    """The top operators by self CUDA time (a presented table) on a GPU; elsewhere the line that says it needs one."""
    from IPython.display import Markdown

    from lablib.sections.tables import present

    if device_type == "cuda" and "self_cuda_ms" in table:
        return present(operator_view(table, "self_cuda_ms", top))
    return Markdown(NO_CUDA_TABLE)


# --- the figures ------------------------------------------------------------------------------


def figures(profile: Measured, counts: Measured, top: int = TOP) -> dict[str, Any]:
    """The section's figures from its records (what the sentences quote and the record keeps as answers)."""
    operators = profile.table("operators")
    results = profile.results
    by_cpu = top_operators(operators, "self_cpu_ms", top)
    cuda = "self_cuda_ms" in operators and operators["self_cuda_ms"].sum() > 0
    by_cuda = top_operators(operators, "self_cuda_ms", top) if cuda else None
    return {
        "trace_file": results["trace_file"],
        "trace_events": int(results["trace_events"]),
        "trace_mb": float(results["trace_mb"]),
        "activities": list(results["activities"]),
        "profiled_steps": int(results["profiled_steps"]),
        "data_loading_ms": float(results["data_loading_ms"]),
        "train_step_ms": float(results["train_step_ms"]),
        "data_share": float(results["data_share"]),
        "top_operator": by_cpu.loc[0, "name"],
        "top_operator_self_cpu_ms": float(by_cpu.loc[0, "self_cpu_ms"]),
        "top_operator_share": float(by_cpu.loc[0, "self_cpu_percent"]),
        "top_three": list(by_cpu["name"].head(3)),
        "top_three_share": float(by_cpu["self_cpu_percent"].head(3).sum()),
        "convolution_share": share_of(operators, "convolution"),
        "batch_norm_share": share_of(operators, "batch_norm"),
        "top_cuda_operator": by_cuda.loc[0, "name"] if by_cuda is not None else None,
        "forward_gmacs": float(counts.results["macs"]) / 1e9,
    }


def ranges_table(figures: Mapping[str, Any]) -> pd.DataFrame:
    """Our two record_function ranges: total over the active steps and per step, in ms."""
    totals = [figures["data_loading_ms"], figures["train_step_ms"]]
    return pd.DataFrame(
        {
            "range": [DATA_RANGE, STEP_RANGE],
            "total_ms": totals,
            "per_step_ms": [total / figures["profiled_steps"] for total in totals],
        }
    )


def steps_view(profile: Measured) -> pd.DataFrame:
    """Every step of the schedule: its phase, its wait for data and its training interval (ms, profiler included)."""
    return profile.table("steps").reindex(columns=["step", "phase", "data_ms", "train_ms"])


# --- the sentences ------------------------------------------------------------------------------


def trace_sentence(figures: Mapping[str, Any], device_type: str) -> str:
    """Where the trace is and what it holds."""
    text = (
        f"The trace of the {counted(figures['profiled_steps'], 'active step')} is `{figures['trace_file']}` in the "
        f"measurement's folder ({figures['trace_events']:,} events, {figures['trace_mb']:.1f} MB; activities: "
        f"{', '.join(figures['activities'])}): open it in `chrome://tracing` or https://ui.perfetto.dev."
    )
    if device_type != "cuda":
        text += (
            " No GPU here, so only CPU activity is recorded; on a GPU the table also has the self CUDA time of each "
            "operator."
        )
    return text


def conclusion(figures: Mapping[str, Any], workers: int, batch_size: int, device_type: str) -> str:
    """P-2025-XC's answer: how much of a step is data loading, and which operators cost the most."""
    active = figures["profiled_steps"]
    data_ms, step_ms, share = figures["data_loading_ms"], figures["train_step_ms"], figures["data_share"]
    if workers > 0:
        blind_spot = (
            f"With {workers} worker process(es), the decoding and augmentation happen outside this process, so "
            "without the `record_function` range this wait would be an unlabelled gap in the trace and missing from "
            "the table. "
        )
    else:
        blind_spot = (
            "With 0 workers the images are decoded and augmented in this process, mostly in Python (PIL, "
            "torchvision), which the operator table barely shows: only the range makes its cost visible. "
        )
    if share < DATA_BOUND_SHARE:
        bound = "Data loading is a small part of the step, so the training is compute-bound here: "
    else:
        bound = (
            "Data loading is a large part of the step, so faster input (more workers, cached decoding) would pay "
            "off before faster kernels; still, "
        )
    if figures["convolution_share"] >= CONVOLUTIONS_DOMINATE:
        convolutions = (
            f": the convolutions dominate, as the model's {figures['forward_gmacs']:.2f} GMACs per image (forward), "
            "almost all in convolutions, predict."
        )
    else:
        convolutions = "; the convolutions do not dominate here, so the per-operator overheads matter."
    gpu = (
        " On the GPU the CPU times are mostly launch and wait costs; the self CUDA column is the kernels' own time."
        if device_type == "cuda"
        else ""
    )
    return (
        f"**P-2025-XC:** over {active} profiled steps with {counted(workers, 'worker')} and batch {batch_size} on "
        f"`{device_type}`, the loop waited {data_ms / active:.1f} ms per step for data (`{DATA_RANGE}`) and "
        f"computed for {step_ms / active:.1f} ms per step (`{STEP_RANGE}`): data loading is "
        f"{100 * share:.1f} % of the step. {blind_spot}{bound}"
        f"the costliest operator is `{figures['top_operator']}` with {figures['top_operator_share']:.1f} % of the "
        f"self CPU time ({figures['top_operator_self_cpu_ms'] / active:.1f} ms per step); the top three "
        f"({', '.join('`' + name + '`' for name in figures['top_three'])}) together take "
        f"{figures['top_three_share']:.1f} %. Operators with *convolution* in their name (forward and backward) take "
        f"{figures['convolution_share']:.1f} % of the self CPU time and BatchNorm's "
        f"{figures['batch_norm_share']:.1f} %{convolutions}{gpu}"
    )


# --- answers at a glance ---------------------------------------------------------------------------


def p25_profiler_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    share, data = number(row.get("top_operator_share")), number(row.get("data_share"))
    text = f"top operator {row.get('top_operator')}: {shown(share, 1)} % of self CPU time"
    text += f"; data loading {shown(100 * data, 1)} % of the profiled steps" if data is not None else ""
    return [answer("p25_profiler", "P-2025-XC", text, share, "% of self CPU time", row)]


PRESENTS = (Presenter("p25_profiler", ("P-2025-XC",), p25_profiler_measurements, p25_profiler_headlines),)
