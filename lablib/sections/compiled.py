"""P-2025-C8 (torch.compile) and the 2025 lab's Q5: what compile does, how it speeds training up, why epoch 1 is slow.

One execution trains every mode of `modes` (eager, default, reduce-overhead, max-autotune), each its own
"compiled_training" measurement (lablib.core.compiled), for the section's epochs (the lab's 10) with the
lab's loader and C3.2's best worker count, as the 2025 lab did (the lab's 2 PIL workers would hide the
compiled modes behind the loader on a fast GPU). Every mode trains on full batches only, compiled with
dynamic=False, so one input shape compiles once; the compiles are counted and timed from torch's own
compile events.

Compared: training time with training time (C2.2's interval: copy, forward, backward, step, synchronised
on a GPU), the compiled modes' gain, and the total epoch time beside it, each for epoch 1 and as the
mean of the steady epochs (6-10 of 10) with its spread over them; the 2025 lab's compile figures are
training times.

`LABLIB_COMPILE_MODES` (comma separated) keeps only those modes, `LABLIB_NO_COMPILE=1` only eager, and
`LABLIB_NO_CPU_COMPILE=1` only eager on the CPU (lablib.core.switches); the notes say what was left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lablib.core.compiled import COMPILE_MODES, GRAPH_MODES, compiled_request, steady_epochs
from lablib.core.config import RunConfig, config_from_params
from lablib.core.errors import ConfigError
from lablib.core.progress import counted
from lablib.core.store import Measured
from lablib.core.switches import COMPILE_MODES_ENV, NO_COMPILE, NO_CPU_COMPILE, Switches, switches
from lablib.core.training import resolve_device_type
from lablib.sections.headlines import Headline, answer, having, latest, missing, number, shown
from lablib.sections.parameters import parse_names
from lablib.sections.points import epochs_frame
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.workers import choose_workers

LAB_EPOCHS = 10  # LAB_SPEC P-2025-C8: 10 epochs per mode
C3_EPOCHS = RunConfig.epochs  # C3 trains the common setup's 5 epochs per worker count
FASTER = 1.05  # a mode more than 5 % faster than eager (training time) counts as a speed-up
FIRST_STEP_SLOWER = 1.10  # a first step more than 10 % above the median step shows a first-call overhead


# --- what P-2025-C8 measures ----------------------------------------------------------------------


def parse_modes(text: str) -> list[str]:
    """'eager,default' -> ['eager', 'default'], each checked, in the order given."""
    return parse_names(text, "modes", COMPILE_MODES, f"(the lab's: {','.join(COMPILE_MODES)})")


def kept_modes(modes: Sequence[str], device_type: str, flags: Switches) -> tuple[list[str], list[str]]:
    """The modes the switches leave, and one sentence per switch that left a mode out."""
    kept, notes = list(modes), []
    if flags.no_compile:
        left = [m for m in kept if m != "eager"]
        kept = [m for m in kept if m == "eager"]
        if left:
            notes.append(f"`{NO_COMPILE}=1` turns torch.compile off: left out {_listed(left)}; eager only.")
    elif flags.compile_modes is not None:
        left = [m for m in kept if m not in flags.compile_modes]
        kept = [m for m in kept if m in flags.compile_modes]
        if left:
            notes.append(
                f"`{COMPILE_MODES_ENV}={','.join(flags.compile_modes)}` keeps only those modes: left out "
                f"{_listed(left)}."
            )
    if flags.no_cpu_compile and device_type == "cpu":
        left = [m for m in kept if m != "eager"]
        kept = [m for m in kept if m == "eager"]
        if left:
            notes.append(
                f"`{NO_CPU_COMPILE}=1` turns torch.compile off for measurements on the CPU: left out "
                f"{_listed(left)}; eager only."
            )
    return kept, notes


def _listed(modes: Sequence[str]) -> str:
    return ", ".join(f"`{mode}`" for mode in modes)


def p25_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """One compiled training per mode of `modes` the switches leave, with C3.2's best worker count.

    C3's sweep trains `c3_epochs` epochs per count (its own 5), this section `epochs` (the lab's 10), so
    the best count is looked up among C3's trainings of `c3_epochs` epochs."""
    c3_epochs = int(params.get("c3_epochs", C3_EPOCHS))
    workers, note = choose_workers({**params, "epochs": c3_epochs}, recorded)
    config = config_from_params({**params, "workers": workers})
    device = resolve_device_type(config.device)
    modes, notes = kept_modes(parse_modes(params.get("modes", ",".join(COMPILE_MODES))), device, switches())
    cold = bool(params.get("cold_compile", True))
    requests = tuple(compiled_request(config, mode, cold) for mode in modes)
    if c3_epochs != config.epochs and params.get("workers", -1) == -1:
        note += f" C3's sweep trained {counted(c3_epochs, 'epoch')} per count; every mode here trains {config.epochs}."
    if not modes:
        raise ConfigError(
            f"modes={params.get('modes', ','.join(COMPILE_MODES))!r} leaves no mode to measure here: "
            + " ".join(notes)
            + " Add a mode the switches keep, or unset the switch."
        )
    return Needs(requests, (note, *notes))


# --- the table ---------------------------------------------------------------------------------------

# The times compared, epoch 1 against the steady epochs (training, then the whole epoch), and each mode's gain.
TIMES = [
    "first_epoch_train_s",
    "steady_train_s",
    "steady_train_s_std",
    "speedup_train_vs_eager",
    "first_epoch_s",
    "steady_epoch_s",
    "steady_epoch_s_std",
    "speedup_epoch_vs_eager",
]
# Each mode's compiles, its steps and the training it did.
COMPILES = ["compile_s", "compiles", "recompiles", "first_step_s", "median_step_s", "final_loss", "final_accuracy"]

TABLE_COLUMNS = ["compile_mode", "cold_compile", "outcome", *TIMES, *COMPILES, "compile_error"]
# What the section's two tables show: the times compared, then each mode's steps, compile cache and training.
TIMES_SHOWN = ["compile_mode", "outcome", *TIMES]
COMPILES_SHOWN = ["compile_mode", "cold_compile", *COMPILES]


def modes_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per measured mode, in COMPILE_MODES order: epoch 1 and the steady epochs' training time and
    total time with their spread, each mode's speed-up over eager on both, its compiles and its outcome."""
    if points.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS + ["run_id"])
    table = points.copy()
    table["order"] = table["compile_mode"].map(COMPILE_MODES.index)
    table = table.sort_values("order").reset_index(drop=True)
    failed = table["compile_failed"].fillna(False).astype(bool) if "compile_failed" in table else False
    table["outcome"] = ["compile failed" if bad else "trained" for bad in pd.Series(failed, index=table.index)]
    eager = table[(table["compile_mode"] == "eager") & (table["outcome"] == "trained")]
    for column, speedup in (("steady_train_s", "speedup_train_vs_eager"), ("steady_epoch_s", "speedup_epoch_vs_eager")):
        base = number(eager.iloc[0][column]) if not eager.empty else None
        table[speedup] = [
            base / value if base is not None and (value := number(v)) not in (None, 0.0) else None
            for v in table[column]
        ]
    return table.reindex(columns=TABLE_COLUMNS + ["run_id"])


def table_headers(window: Sequence[int]) -> dict[str, str]:
    """The table's headers in words, naming the steady epochs ("epochs 6–10")."""
    span = epochs_span(window)
    return {
        "steady_train_s": f"training, mean of {span} (s)",
        "steady_train_s_std": f"training, std over {span} (s)",
        "steady_epoch_s": f"epoch total, mean of {span} (s)",
        "steady_epoch_s_std": f"epoch total, std over {span} (s)",
    }


def epochs_span(window: Sequence[int]) -> str:
    """[6, 7, 8, 9, 10] -> 'epochs 6–10'; [2] -> 'epoch 2'."""
    return f"epoch {window[0]}" if len(window) == 1 else f"epochs {window[0]}–{window[-1]}"


def mode_epochs(measured: Sequence[Measured]) -> pd.DataFrame:
    """One row per epoch of every mode (lablib.sections.points.epochs_frame) with its `compile_mode`."""
    epochs = epochs_frame(measured)
    if epochs.empty:
        return epochs
    modes = {item.run_id: item.request.settings["compile_mode"] for item in measured}
    return epochs.assign(compile_mode=epochs["run_id"].map(modes))


def compile_points(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table's rows as the section's answers (its record's `compile_points`, what the headline reads)."""
    return [{k: v for k, v in row.items() if k != "run_id"} for row in table.to_dict("records")]


# --- the sentences -------------------------------------------------------------------------------------


def full_batches_sentence(dropped_images: int, train_images: int, batch_size: int) -> str:
    """Why every mode trains on full batches and compiles with static shapes, with this run's numbers."""
    shape = (
        "so one input shape is compiled once. With the partial batch kept, the end of epoch 1 would compile a "
        "second time (with `max-autotune` a second autotune, with `reduce-overhead` new CUDA graphs) and the later "
        "epochs would run a dynamic-shape graph. Eager drops it too, so every mode trains on the same batches."
    )
    if dropped_images:
        return (
            f"Every mode trains on full batches only: the last partial batch of each epoch ({dropped_images:,} of "
            f"{train_images:,} images at batch {batch_size}) is dropped (the shuffle differs each epoch, so every "
            f"image is still seen) and the model is compiled with `dynamic=False`, {shape}"
        )
    return (
        f"Every mode trains on full batches only ({train_images:,} images are a whole number of batches of "
        f"{batch_size}, so none is dropped here) and the model is compiled with `dynamic=False`, {shape}"
    )


def batches_text(points: pd.DataFrame, batch_size: int) -> str:
    """full_batches_sentence with the measured training set and its dropped images."""
    row = points.iloc[0]
    return full_batches_sentence(int(row["dropped_images"]), int(row["train_images"]), batch_size)


def window_sentence(planned_epochs: int) -> str:
    """Which epochs the steady figures average, said against the lab's 10."""
    window = steady_epochs(planned_epochs)
    if planned_epochs == 1:
        return (
            "With 1 epoch there is no steady epoch: the steady figures are epoch 1's own, compile included, so they "
            "say nothing about the compiled code's speed; the lab trains 10 epochs."
        )
    spread = "with their std over them" if len(window) > 1 else "one epoch, so no spread"
    if planned_epochs == LAB_EPOCHS:
        return f"The steady figures are the mean of {epochs_span(window)}, as the lab asks, {spread}."
    return (
        f"The steady figures are the mean of {epochs_span(window)} (with {planned_epochs} epochs instead of the "
        f"lab's {LAB_EPOCHS}, the epochs after the first half), {spread}."
    )


def _plus_minus(value: Any) -> str:
    spread = number(value)
    return f" ± {spread:.2f}" if spread is not None else ""


def mode_sentence(row: Mapping[str, Any], window: Sequence[int]) -> str:
    """One mode's result: epoch 1 against the steady epochs (training and total), and its compiles or failure."""
    mode = row["compile_mode"]
    if row["outcome"] == "compile failed":
        return (
            f"**{mode}: compile failed**; the failure, as recorded:\n\n```\n{row.get('compile_error')}\n```\n\n"
            "Its row shows what was measured before the failure."
        )
    span = epochs_span(window)
    times = (
        f"epoch 1's training took {row['first_epoch_train_s']:.2f} s (epoch total {row['first_epoch_s']:.2f} s) "
        f"against {row['steady_train_s']:.2f}{_plus_minus(row['steady_train_s_std'])} s "
        f"(total {row['steady_epoch_s']:.2f}{_plus_minus(row['steady_epoch_s_std'])} s) as the mean of {span}"
    )
    steps = f"its first step took {row['first_step_s']:.2f} s against a median step of {row['median_step_s']:.3f} s"
    if mode == "eager":
        slower = row["first_step_s"] > FIRST_STEP_SLOWER * row["median_step_s"]
        overhead = (
            ": the first-call overhead every mode pays (first allocations, cuDNN/oneDNN set-up)"
            if slower
            else ": no first-call overhead shows above the steps' own variation"
        )
        return f"**eager:** {times}; nothing is compiled, and {steps}{overhead}."
    compiles, recompiles = int(number(row.get("compiles")) or 0), int(number(row.get("recompiles")) or 0)
    caches = "with Inductor's caches off (a cold compile)" if row.get("cold_compile") else "with Inductor's caches on"
    compile_text = (
        f"torch compiled {counted(compiles, 'graph')} (forward and backward) in **{row['compile_s']:.2f} s** {caches}"
        if number(row.get("compile_s")) is not None
        else "this torch reports no compile events, so the compile time is not counted"
    )
    again = (
        f", {recompiles} of them recompilations (a guard failed after the first compile)"
        if recompiles
        else ", none of them a recompilation"
    )
    return f"**{mode}:** {times}; {compile_text}{again}; {steps}."


def mode_sentences(table: pd.DataFrame, window: Sequence[int]) -> list[str]:
    """Every mode's sentence, in the table's order."""
    return [mode_sentence(row, window) for row in table.to_dict("records")]


def speedup_sentence(table: pd.DataFrame, window: Sequence[int]) -> str:
    """The compiled modes against eager: training time with training time, then the total epoch time."""
    done = table[table["outcome"] == "trained"].set_index("compile_mode")
    compiled_modes = [m for m in done.index if m != "eager"]
    span = epochs_span(window)
    if "eager" not in done.index or not compiled_modes:
        return (
            "The speed-up needs both eager and a compiled mode measured; add the missing one(s) to `modes` "
            f"({', '.join(COMPILE_MODES)})."
        )
    eager = done.loc["eager"]
    training = "; ".join(
        f"`{m}` {done.loc[m, 'steady_train_s']:.2f} s ({done.loc[m, 'speedup_train_vs_eager']:.2f}× eager)"
        for m in compiled_modes
    )
    totals = "; ".join(
        f"`{m}` {done.loc[m, 'steady_epoch_s']:.2f} s ({done.loc[m, 'speedup_epoch_vs_eager']:.2f}×)"
        for m in compiled_modes
    )
    fastest = done["steady_train_s"].astype(float).idxmin()
    verdict = (
        f"`{fastest}` trains fastest"
        if fastest == "eager" or done.loc[fastest, "speedup_train_vs_eager"] < FASTER
        else f"`{fastest}` trains fastest, {done.loc[fastest, 'speedup_train_vs_eager']:.2f}× eager"
    )
    if fastest != "eager" and done.loc[fastest, "speedup_train_vs_eager"] < FASTER:
        verdict += f", but within {FASTER - 1:.0%} of eager: no real gain here"
    return (
        f"Measured here (training time per epoch, mean of {span}): eager {eager['steady_train_s']:.2f} s; "
        f"{training}. The total epoch time (data loading included): eager {eager['steady_epoch_s']:.2f} s; "
        f"{totals}. {verdict}."
    )


def first_epoch_sentence(table: pd.DataFrame, window: Sequence[int]) -> str:
    """Epoch 1's extra training time per mode, and how much of it the counted compiles explain."""
    done = table[table["outcome"] == "trained"]
    said = []
    for row in done.to_dict("records"):
        excess = row["first_epoch_train_s"] - row["steady_train_s"]
        compile_s = number(row.get("compile_s"))
        if row["compile_mode"] == "eager" or compile_s is None or window == [1]:
            said.append(f"`{row['compile_mode']}`: epoch 1's training is {excess:+.2f} s against the steady epochs.")
            continue
        compile_text = counted(int(number(row.get("compiles")) or 0), "compile")
        if compile_s <= excess:
            said.append(
                f"`{row['compile_mode']}`: epoch 1's training is {excess:+.2f} s against the steady epochs, of which "
                f"{compile_s:.2f} s ({compile_s / excess:.0%}) is the compile torch reports ({compile_text})."
            )
        else:
            said.append(
                f"`{row['compile_mode']}`: epoch 1's training is {excess:+.2f} s against the steady epochs; the "
                f"compile torch reports ({compile_s:.2f} s, {compile_text}) accounts for all of it, and the rest of "
                f"epoch 1 ran {compile_s - excess:.2f} s faster than the steady epochs (the steps' own variation)."
            )
    return " ".join(said)


def conclusions(table: pd.DataFrame, window: Sequence[int]) -> list[str]:
    """Q5-2025's three answers; the measured parts from `modes_table` (failed modes left out)."""
    return [
        "**Q5.1 What torch.compile does:** it turns the model's Python into graphs and compiles them. TorchDynamo "
        "reads the Python bytecode of `forward` at its first call and records the tensor operations as an FX graph "
        "(falling back to Python at a *graph break*); AOTAutograd traces the matching backward graph; Inductor lowers "
        "both to fused kernels: Triton kernels on a GPU, C++/OpenMP loops (compiled with the system's C++ compiler) on "
        "a CPU. Guards on shapes, dtypes and module state decide when the compiled code can be reused and when to "
        "recompile.",
        "**Q5.2 How it speeds training up:** by fusing chains of element-wise operations (BatchNorm's normalise, "
        "scale and shift, the ReLU, the residual add) into one kernel, it reads and writes each activation once "
        "instead of once per operation, and launches fewer kernels; `reduce-overhead` additionally replays the step "
        "as a CUDA graph (one launch for the whole graph), and `max-autotune` benchmarks several kernel "
        "implementations per convolution/matmul and keeps the fastest (with CUDA graphs as well). Convolutions "
        "themselves still run in cuDNN/oneDNN, so the gain is bounded by the share of time outside them; and it "
        "shows in the training time only: the total epoch time also holds the wait for the loader, which compile "
        "does not touch. " + speedup_sentence(table, window),
        "**Q5.3 Why epoch 1 is slow:** the compilation happens inside it. The first call traces and compiles the "
        "forward and backward graphs (and, with `max-autotune`, benchmarks kernel candidates; with CUDA graphs, "
        "records them), so the first step takes seconds instead of milliseconds. A second input shape (a last "
        "partial batch) would compile again; here the batches are all full, so torch compiles once. "
        + first_epoch_sentence(table, window)
        + " Eager's own epoch-1 excess is the baseline every mode pays (loader start-up, first allocations); a long "
        "training amortises the compile, a short one does not.",
    ]


def cuda_graphs_note(device_type: str) -> str:
    """Whether CUDA graphs apply on this device, and what that means for the modes' differences."""
    if device_type == "cuda":
        return (
            f"**CUDA graphs** apply on this GPU to {_listed(GRAPH_MODES)}: their step is recorded once (counted as "
            "CUDA graph recordings beside the compiles) and replayed with one launch."
        )
    return (
        f"**On the CPU:** `reduce-overhead` works by recording CUDA graphs, which exist only for CUDA tensors, so on "
        f"`{device_type}` Inductor skips them and `reduce-overhead` generates the same C++ kernels as `default`; "
        "`max-autotune`'s CUDA graphs do not apply either, and its kernel benchmarking covers only the few CPU "
        "templates Inductor has. Differences between those modes on the CPU are therefore compile time and noise, "
        "not CUDA-graph savings."
    )


# --- answers at a glance ----------------------------------------------------------------------------------


def p25_compile_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    points = having(pd.DataFrame(row.get("compile_points") or []), "steady_train_s")  # the modes that finished
    if points.empty:
        return [missing("p25_compile", "P-2025-C8", "no compile mode finished its epochs")]
    fastest = points.loc[points["steady_train_s"].astype(float).idxmin()]
    deviation = number(fastest.get("steady_train_s_std"))
    text = (
        f"fastest steady training: {fastest['compile_mode']} {shown(fastest['steady_train_s'])}"
        f"{' ± ' + shown(deviation) if deviation is not None else ''} s per epoch "
        f"(epoch 1 {shown(fastest.get('first_epoch_train_s'))} s"
        + (f", compile {shown(fastest.get('compile_s'), 1)} s" if fastest["compile_mode"] != "eager" else "")
        + ")"
    )
    eager = points[points["compile_mode"] == "eager"]
    if not eager.empty and fastest["compile_mode"] != "eager":
        text += f"; eager {shown(eager.iloc[0]['steady_train_s'])} s"
    return [answer("p25_compile", "P-2025-C8", text, float(fastest["steady_train_s"]), "s per epoch", row, deviation)]


PRESENTS = (
    Presenter("p25_compile", ("P-2025-C8",), p25_measurements, p25_compile_headlines, qualifier="compile_mode"),
)
