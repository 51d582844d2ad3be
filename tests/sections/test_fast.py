"""lablib.sections.fast: X-FAST's planner (C3's best point reused, compile flags), rows, table, sentences, headline,
and the rule that a subset epoch is never judged against the full-data targets."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from factories import epoch_rows, record_c3, record_measurement

from lablib.core.errors import ConfigError, LabError
from lablib.core.store import lookup
from lablib.core.switches import Switches
from lablib.sections import fast
from lablib.sections.headlines import section_headlines
from lablib.sections.tables import present

PARAMS = {"data": "fake", "device": "cpu", "limit_train": 64, "limit_test": 32, "epochs": 5, "workers": -1}
NOTHING = lambda request: None  # noqa: E731


def test_the_compile_flags_map_onto_the_fast_engine_s_compile_setting():
    none = Switches()
    assert fast.fast_compile(False, True, "cuda", none)[0] == "none"
    assert fast.fast_compile(True, True, "cuda", none) == (
        "reduce-overhead",
        "The fast engine is compiled with mode `reduce-overhead` (CUDA graphs).",
    )
    assert fast.fast_compile(True, False, "cuda", none)[0] == "default"
    mode, why = fast.fast_compile(True, True, "cpu", none)
    assert mode == "default" and "CUDA graphs exist on CUDA only" in why
    mode, why = fast.fast_compile(True, True, "cpu", Switches(no_cpu_compile=True))
    assert mode == "none" and "LABLIB_NO_CPU_COMPILE=1" in why
    assert fast.fast_compile(True, True, "cuda", Switches(no_cpu_compile=True))[0] == "reduce-overhead"
    mode, why = fast.fast_compile(True, True, "cuda", Switches(no_compile=True))
    assert mode == "none" and "LABLIB_NO_COMPILE=1" in why


def test_the_planner_reuses_c3_s_best_point_as_the_faithful_mode(monkeypatch):
    monkeypatch.delenv("LABLIB_NO_CPU_COMPILE", raising=False)
    params = {**PARAMS, "batch_size": 16, "large_batch": 64, "lr_scaling": "sqrt", "use_compile": True}
    needs = fast.x_fast_measurements(params, NOTHING)
    faithful, engine, large, counts = needs.requests
    assert faithful.settings["workers"] == 2 and "the lab's default of 2 workers" in needs.notes[0]
    record_c3({**PARAMS, "batch_size": 16}, best=0)  # C3 at the same data, subset, epochs, batch and device
    needs = fast.x_fast_measurements(params, lookup)
    faithful, engine, large, counts = needs.requests
    assert faithful.settings["engine"] == "faithful" and faithful.settings["workers"] == 0
    assert lookup(faithful) is not None  # the very measurement C3 recorded for its best count: trained once
    assert "Faithful mode: 0 workers: C3.2's best runtime" in needs.notes[0]
    assert engine.settings["engine"] == "fast" and engine.settings["compile"] == "default"  # no CUDA graphs on a CPU
    assert engine.settings["workers"] == 0 and engine.settings["precision"] == "fp32"  # no bf16 on a CPU
    assert large.settings["batch_size"] == 64 and large.settings["lr"] == pytest.approx(0.1 * 2)  # sqrt(64 / 16)
    assert counts.kind == "counts" and counts.settings["model"] == "resnet18"
    off = fast.x_fast_measurements({**params, "use_compile": False}, lookup)
    assert {r.settings["compile"] for r in off.requests[1:3]} == {"none"} and "`use_compile` is off" in off.notes[1]
    monkeypatch.setenv("LABLIB_NO_CPU_COMPILE", "1")
    switched = fast.x_fast_measurements(params, lookup)
    assert switched.requests[1].settings["compile"] == "none" and "LABLIB_NO_CPU_COMPILE=1" in switched.notes[1]
    with pytest.raises(ConfigError, match="large_batch=16 is not larger than batch_size=16"):
        fast.x_fast_measurements({**params, "large_batch": 16}, NOTHING)
    with pytest.raises(ConfigError, match="lr_scaling='cubic'"):
        fast.x_fast_measurements({**params, "lr_scaling": "cubic"}, NOTHING)


# --- rows from recorded measurements --------------------------------------------------------------


def recorded_modes(images: int = 64, epochs: int = 3):
    needs = fast.x_fast_measurements(
        {**PARAMS, "batch_size": 16, "large_batch": 32, "use_compile": False, "epochs": epochs}, NOTHING
    )
    faithful, engine, large, counts = needs.requests
    measured = [
        record_measurement(
            faithful, results={"train_images": images, "test_accuracy": 40.0}, epochs=epoch_rows(epochs, 1.0, 3.0)
        ),
        record_measurement(
            engine,
            results={"train_images": images, "test_accuracy": 39.0, "compile_s": 0.0, "compiles": 0},
            epochs=epoch_rows(epochs, 0.0, 1.0),
        ),
        record_measurement(
            large,
            results={"train_images": images, "test_accuracy": 38.0, "compile_s": 0.0, "compiles": 0},
            epochs=epoch_rows(epochs, 0.0, 0.5),
        ),
        record_measurement(counts, results={"training_flops": 3.3e9, "macs": 556_000_000}),
    ]
    return measured


def test_the_rows_come_from_the_recorded_trainings():
    rows = fast.mode_rows(recorded_modes())
    assert rows["mode"].tolist() == list(fast.MODES)
    faithful, engine = rows.loc["faithful"], rows.loc["fast"]
    assert faithful["epoch_s"] == pytest.approx(4.01)  # the mean of the epochs after the first (epoch_rows)
    assert faithful["epoch_s_std"] == pytest.approx(0.0) and faithful["epoch1_s"] == pytest.approx(4.0 * 1.2 + 0.01)
    assert faithful["epoch_images"] == 256 and faithful["images_per_s"] == pytest.approx(256 / 4.01)
    assert faithful["math_precision"] == "fp32" and pd.isna(faithful["mfu"]) and pd.isna(faithful["peak_tflops"])
    assert pd.isna(faithful["compile_s"]) and engine["compile_s"] == 0.0  # the faithful loop compiles nothing
    assert faithful["full_epoch_s"] == pytest.approx(50_000 / (256 / 4.01))  # derived: a 64-image set
    assert engine["achieved_tflops"] == pytest.approx(3.3e9 * 256 / 1.01 / 1e12)
    table = fast.speed_table(rows)
    shown = present(table, headers=fast.speed_headers(rows)).data
    assert shown["mode"].tolist() == ["faithful", "fast", "fast-large"]
    assert (shown["MFU (% of the peak)"] == "—").all() and "epoch time, mean after epoch 1 (s)" in shown.columns
    assert "With one epoch" not in fast.basis_sentence(rows)
    once = fast.mode_rows(recorded_modes(epochs=1))
    assert fast.speed_headers(once)["epoch_s"] == "epoch time, epoch 1 only (s)"
    assert "With one epoch per mode, its epoch time is epoch 1's" in fast.basis_sentence(once)
    assert once.loc["faithful", "epoch_s"] == pytest.approx(4.0 * 1.2 + 0.01) and pd.isna(
        once.loc["fast", "epoch_s_std"]
    )
    with pytest.raises(LabError, match="got 2 and 1"):
        fast.split([m for m in recorded_modes() if m.request.settings.get("engine") != "faithful"])


def test_mfu_against_the_datasheet_peak_on_a_known_gpu():
    values = {
        "engine": "fast",
        "batch_size": 128,
        "lr": 0.1,
        "workers": 0,
        "compile": "reduce-overhead",
        "precision": "bf16",
        "epochs": 5,
        "train_images": 50_000,
        "resolved_device": "cuda",
        "device_name": "NVIDIA H200",
        "compile_s": 20.0,
        "compiles": 1,
        "test_accuracy": 80.0,
        "run_id": "r",
    }
    epochs = [{"total_s": 1.0, "images": 49_920}] + [{"total_s": 0.5, "images": 49_920}] * 4
    row = fast.mode_row("fast", values, epochs, 3.3e9)
    assert row["math_precision"] == "bf16" and row["peak_tflops"] == pytest.approx(989.5)
    assert row["mfu"] == pytest.approx(3.3e9 * 49_920 / 0.5 / 989.5e12)
    assert row["lower_bound_s"] == pytest.approx(3.3e9 * 49_920 / 989.5e12) and row["full_epoch_s"] is None
    fp32 = fast.mode_row("faithful", {**values, "precision": "fp32", "engine": "faithful"}, epochs, 3.3e9)
    assert fp32["math_precision"] == "tf32" and fp32["compile_s"] is None  # cuDNN's TF32 on an H200
    turing = fast.mode_row("faithful", {**values, "precision": "fp32", "device_name": "Tesla T4"}, epochs, 3.3e9)
    assert turing["math_precision"] == "fp32" and turing["peak_tflops"] == pytest.approx(8.1)


# --- the sentences, and the subset rule ---------------------------------------------------------------------


def _mode_rows(**changes) -> pd.DataFrame:
    base = {
        "device_name": "NVIDIA H200",
        "device_type": "cuda",
        "epochs": 5,
        "epochs_run": 5,
        "train_images": 50_000,
        "math_precision": "bf16",
        "compile_s": 20.0,
        "compiles": 1,
        "compile": "reduce-overhead",
        "lr": 0.1,
        "epoch_s_std": 0.01,
        "full_epoch_s": None,
        "lower_bound_s": 0.17,
    }
    rows = {
        "faithful": {"batch_size": 128, "epoch_s": 2.0, "epoch_images": 50_000, "images_per_s": 25_000, "mfu": 0.05},
        "fast": {"batch_size": 128, "epoch_s": 0.6, "epoch_images": 49_920, "images_per_s": 83_200, "mfu": 0.2},
        "fast-large": {"batch_size": 512, "epoch_s": 0.4, "epoch_images": 49_664, "images_per_s": 124_160, "mfu": 0.3},
    }
    accuracy = {"faithful": 80.0, "fast": 79.0, "fast-large": 77.5}
    for mode, values in changes.items():
        rows[mode.replace("_", "-")].update(values)
    frame = pd.DataFrame([{**base, "mode": mode, "test_accuracy": accuracy[mode], **row} for mode, row in rows.items()])
    return frame.set_index("mode", drop=False)


def _verdict(rows: pd.DataFrame) -> str:
    return fast.time_targets_sentence(rows.loc["faithful"].to_dict(), rows.loc["fast"].to_dict())


def test_the_time_targets_are_judged_on_a_measured_full_epoch_on_the_target_gpu():
    assert "faithful setting meets" in _verdict(_mode_rows())
    assert "fast engine meets its target at 0.60 s" in _verdict(_mode_rows())
    assert "meets the stretch goal" in _verdict(_mode_rows(fast={"epoch_s": 0.45}))
    assert "fast engine misses its target" in _verdict(_mode_rows(fast={"epoch_s": 0.9}))
    assert "faithful setting misses" in _verdict(_mode_rows(faithful={"epoch_s": 3.0}))
    other = _verdict(_mode_rows(fast={"device_name": "NVIDIA L4"}))
    assert "not on an H200, so it is not judged" in other
    assert f"{fast.TARGETS['fast_epoch_s']} s per fast epoch" in _verdict(_mode_rows())


def test_a_subset_epoch_is_never_judged_against_the_full_data_targets():
    """The GPU check's 20,000-image bundle has limit_train 0: only the measured train_images tells it is a subset.
    Its 0.45 s epochs are 2.5× smaller than the targets' 50,000-image epochs: never 'meets the stretch goal'."""
    subset = {"train_images": 20_000}
    rows = _mode_rows(
        faithful={**subset, "epoch_images": 20_000, "images_per_s": 10_000, "epoch_s": 2.0, "full_epoch_s": 5.0},
        fast={**subset, "epoch_images": 19_968, "images_per_s": 44_373, "epoch_s": 0.45, "full_epoch_s": 1.127},
        fast_large={**subset, "epoch_images": 19_968, "epoch_s": 0.3, "full_epoch_s": 0.75},
    )
    said = _verdict(rows)
    assert "not judged" in said and "20,000 images, not all 50,000" in said
    assert "meets" not in said and "misses" not in said
    findings = fast.findings(rows, "sqrt")
    joined = " ".join(findings)
    assert "stretch goal" not in joined.replace("as a stretch", "") and "meets" not in joined
    # every per-epoch figure says what it was measured on, and a full epoch is derived and labelled
    assert "0.45 ± 0.01 s per epoch of 19,968 images" in findings[0]
    assert "≈ 1.13 s per 50,000-image epoch, derived from 44,373 images/s on 20,000 images" in findings[0]
    basis = fast.basis_sentence(rows)
    assert "20,000 images, not the 50,000" in basis and "only derived" in basis
    # only one of the two on the full set: still not judged
    half = _mode_rows(fast=subset)
    assert "not judged" in _verdict(half) and "20,000 and 50,000 images" in _verdict(half)


def test_the_accuracy_target_is_judged_only_after_five_epochs_on_the_full_data():
    def verdict(rows):
        return fast.accuracy_target_sentence(rows.loc["faithful"].to_dict(), rows.loc["fast"].to_dict())

    assert "met, -1.00 points" in verdict(_mode_rows())
    assert "missed, -3.00 points" in verdict(_mode_rows(fast={"test_accuracy": 77.0}))
    assert "not judged" in verdict(_mode_rows(fast={"epochs_run": 1}))
    assert "not judged" in verdict(_mode_rows(faithful={"train_images": 1024}))
    assert "not judged" in verdict(_mode_rows(fast={"test_accuracy": float("nan")}))


def test_the_findings_quote_the_rows():
    one, two, three, four, targets = fast.findings(_mode_rows(), "sqrt")
    assert "2.00 ± 0.01 s per epoch of 50,000 images" in one and "0.60 ± 0.01 s per epoch of 49,920 images" in one
    assert "3.3× faster per epoch" in one and "20.0 s of compilation (1 compile, counted" in one
    assert fast.times_faster(1.0, 1.25) == "1.2× slower per epoch"
    assert "MFU 5.0 %" in one and "MFU 20.0 %" in one and "derived" not in one
    assert "0.170 s against the measured 0.60 s" in two
    assert "batch 512" in three and "sqrt scaling" in three and "MFU 30.0 %" in three
    assert "-1.00 points" in four and "77.50 %" in four
    assert "issue" not in " ".join([one, two, three, four, targets]).lower()
    assert "over all 50,000 training images" in fast.basis_sentence(_mode_rows())
    assert "fast 49,920, fast-large 49,664" in fast.basis_sentence(_mode_rows())


def test_the_findings_without_a_peak_say_so():
    cpu = {"mfu": None, "lower_bound_s": None, "device_name": "cpu", "device_type": "cpu", "compile": "none"}
    rows = _mode_rows(faithful=cpu, fast=cpu, fast_large=cpu)
    one, two, _, _, _ = fast.findings(rows, "sqrt")
    assert "GPU figures are still to be measured on a GPU" in two and "—" in two
    assert "(not compiled)" in one and "MFU —" in one
    gpu = {"mfu": None, "lower_bound_s": None, "device_name": "NVIDIA A10G", "device_type": "cuda"}
    _, other_gpu, _, _, _ = fast.findings(_mode_rows(faithful=gpu, fast=gpu, fast_large=gpu), "sqrt")
    assert "still to be measured" not in other_gpu and "NVIDIA A10G" in other_gpu


def test_the_headline_is_the_fastest_mode_with_its_spread_and_its_epoch_s_size():
    rows = _mode_rows()
    answers = fast.fast_points(rows)
    runs = pd.DataFrame([{"run_id": "r", "ended": "1", "status": "complete", "fast_points": answers}])
    (line,) = section_headlines("x_fast", runs)
    assert line.value == pytest.approx(0.4) and line.spread == pytest.approx(0.01)
    assert "fastest mode fast-large: 0.40 ± 0.01 s per epoch of 49,664 images" in line.text
    assert "5.0× the lab's loop (2.00 s)" in line.text and "derived" not in line.text
    subset = _mode_rows(
        fast_large={"train_images": 20_000, "epoch_images": 19_968, "full_epoch_s": 1.0},
    )
    runs = pd.DataFrame([{"run_id": "r", "ended": "1", "status": "complete", "fast_points": fast.fast_points(subset)}])
    (line,) = section_headlines("x_fast", runs)
    assert "of 19,968 images (≈ 1.00 s per 50,000 images, derived)" in line.text
    assert math.isclose(line.value, 0.4)
