"""lablib.sections.compiled: P-2025-C8's planner (modes, C3.2's workers, the switches), table, sentences, headline."""

from __future__ import annotations

import pandas as pd
import pytest
from factories import epoch_rows, record_c3, record_measurement

from lablib.core.compiled import COMPILE_MODES, compiled_request
from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.store import lookup
from lablib.core.switches import Switches
from lablib.sections import compiled
from lablib.sections.headlines import section_headlines
from lablib.sections.points import frame
from lablib.sections.tables import present

PARAMS = {"data": "fake", "device": "cpu", "limit_train": 64, "limit_test": 32, "epochs": 10, "workers": -1}
NOTHING = lambda request: None  # noqa: E731  (nothing recorded: the dry run's first look)


def test_parse_modes_keeps_the_order_and_names_a_bad_one():
    assert compiled.parse_modes("default, eager,default") == ["default", "eager"]
    with pytest.raises(ConfigError, match="modes='eager,turbo'"):
        compiled.parse_modes("eager,turbo")
    with pytest.raises(ConfigError, match="modes=''"):
        compiled.parse_modes("")


def test_the_switches_leave_modes_out_and_say_so():
    every = list(COMPILE_MODES)
    assert compiled.kept_modes(every, "cuda", Switches()) == (every, [])
    kept, notes = compiled.kept_modes(every, "cuda", Switches(compile_modes=("eager", "default")))
    assert kept == ["eager", "default"] and "LABLIB_COMPILE_MODES=eager,default" in notes[0]
    assert "`reduce-overhead`, `max-autotune`" in notes[0]
    kept, notes = compiled.kept_modes(every, "cpu", Switches(no_cpu_compile=True))
    assert kept == ["eager"] and "LABLIB_NO_CPU_COMPILE=1" in notes[0] and "on the CPU" in notes[0]
    assert compiled.kept_modes(every, "cuda", Switches(no_cpu_compile=True)) == (every, [])  # a GPU keeps them
    kept, notes = compiled.kept_modes(every, "cuda", Switches(no_compile=True))
    assert kept == ["eager"] and "LABLIB_NO_COMPILE=1" in notes[0]


def test_the_planner_asks_one_measurement_per_mode_with_c3_s_best_workers(monkeypatch):
    monkeypatch.delenv("LABLIB_COMPILE_MODES", raising=False)
    needs = compiled.p25_measurements({**PARAMS, "modes": "eager,default", "cold_compile": True}, NOTHING)
    assert [r.settings["compile_mode"] for r in needs.requests] == ["eager", "default"]
    assert {r.kind for r in needs.requests} == {"compiled_training"}
    assert {r.settings["workers"] for r in needs.requests} == {2}  # C3 not recorded: the lab's 2, and it says so
    assert "the lab's default of 2 workers" in needs.notes[0] and not needs.waiting
    assert [r.settings["cold_compile"] for r in needs.requests] == [False, True]  # eager compiles nothing
    assert {r.settings["epochs"] for r in needs.requests} == {10}

    record_c3({**PARAMS, "epochs": 5}, best=0)  # C3 trains its own 5 epochs per count
    needs = compiled.p25_measurements({**PARAMS, "modes": "eager,default"}, lookup)
    assert {r.settings["workers"] for r in needs.requests} == {0}
    assert "0 workers: C3.2's best runtime" in needs.notes[0] and "every mode here trains 10" in needs.notes[0]
    # the epochs of C3's sweep are a parameter: another sweep's epochs find no best count
    other = compiled.p25_measurements({**PARAMS, "modes": "eager", "c3_epochs": 2}, lookup)
    assert other.requests[0].settings["workers"] == 2
    fixed = compiled.p25_measurements({**PARAMS, "modes": "eager", "workers": 3}, lookup)
    assert fixed.requests[0].settings["workers"] == 3 and "as the `workers` parameter asks" in fixed.notes[0]


def test_the_planner_reads_the_environment_switches(monkeypatch):
    monkeypatch.setenv("LABLIB_COMPILE_MODES", "eager,max-autotune")
    needs = compiled.p25_measurements(PARAMS, NOTHING)  # the default modes: all four
    assert [r.settings["compile_mode"] for r in needs.requests] == ["eager", "max-autotune"]
    assert any("left out `default`, `reduce-overhead`" in note for note in needs.notes)
    monkeypatch.delenv("LABLIB_COMPILE_MODES")
    monkeypatch.setenv("LABLIB_NO_CPU_COMPILE", "1")
    needs = compiled.p25_measurements(PARAMS, NOTHING)
    assert [r.settings["compile_mode"] for r in needs.requests] == ["eager"]
    monkeypatch.setenv("LABLIB_COMPILE_MODES", "default")
    with pytest.raises(ConfigError, match="leaves no mode to measure here: .*LABLIB_NO_CPU_COMPILE=1"):
        compiled.p25_measurements(PARAMS, NOTHING)
    monkeypatch.setenv("LABLIB_NO_CPU_COMPILE", "maybe")
    with pytest.raises(ConfigError, match="LABLIB_NO_CPU_COMPILE='maybe' is not a switch"):
        compiled.p25_measurements(PARAMS, NOTHING)


# --- the table and the sentences, from recorded measurements -----------------------------------------


def _results(mode: str, train: float, total: float, **changes) -> dict:
    results = {
        "compile_failed": False,
        "compile_error": None,
        "epochs_done": 10,
        "steady_epochs": [6, 7, 8, 9, 10],
        "first_epoch_s": total + 20.0,
        "first_epoch_train_s": train + 20.0,
        "steady_epoch_s": total,
        "steady_epoch_s_std": 0.1,
        "steady_train_s": train,
        "steady_train_s_std": 0.05,
        "first_step_s": 19.0,
        "median_step_s": 0.025,
        "compile_s": 0.0 if mode == "eager" else 18.5,
        "compiles": 0 if mode == "eager" else 1,
        "recompiles": 0,
        "final_loss": 0.5,
        "final_accuracy": 80.0,
        "train_images": 64,
        "dropped_images": 0,
    }
    return {**results, **changes}


def recorded_modes(rows: dict[str, dict], seed: int = 0) -> pd.DataFrame:
    """The modes recorded with these results (a new `seed` for a second set in the same test: other keys)."""
    config = make_config(**{**PARAMS, "workers": 0, "seed": seed})
    measured = [
        record_measurement(compiled_request(config, mode), results=results, epochs=epoch_rows(10))
        for mode, results in rows.items()
    ]
    return frame(measured)


def test_the_table_compares_training_with_training_and_total_with_total():
    points = recorded_modes(
        {
            "max-autotune": _results("max-autotune", 4.0, 6.0),
            "eager": _results("eager", 8.0, 10.0),
            "default": _results("default", 7.9, 9.9),
        }
    )
    table = compiled.modes_table(points)
    assert table["compile_mode"].tolist() == ["eager", "default", "max-autotune"]  # the lab's order
    by_mode = table.set_index("compile_mode")
    assert by_mode.loc["max-autotune", "speedup_train_vs_eager"] == pytest.approx(2.0)  # 8 / 4: training times
    assert by_mode.loc["max-autotune", "speedup_epoch_vs_eager"] == pytest.approx(10 / 6)  # totals with totals
    assert by_mode.loc["eager", "speedup_train_vs_eager"] == pytest.approx(1.0)
    assert (table["outcome"] == "trained").all()
    shown = present(table, compiled.TIMES_SHOWN, headers=compiled.table_headers([6, 7, 8, 9, 10])).data
    assert "training, mean of epochs 6–10 (s)" in shown.columns and "epoch total, epoch 1 (s)" in shown.columns
    assert "training speed-up vs eager (×)" in shown.columns and shown["outcome"].tolist() == ["trained"] * 3
    assert "compile (s)" in present(table, compiled.COMPILES_SHOWN).data.columns
    points_answer = compiled.compile_points(table)
    assert points_answer[0]["compile_mode"] == "eager" and "run_id" not in points_answer[0]


def test_the_speed_up_sentence_quotes_training_and_total_times():
    points = recorded_modes({"eager": _results("eager", 8.0, 10.0), "default": _results("default", 4.0, 6.0)})
    said = compiled.speedup_sentence(compiled.modes_table(points), [6, 7, 8, 9, 10])
    assert "training time per epoch, mean of epochs 6–10): eager 8.00 s; `default` 4.00 s (2.00× eager)" in said
    assert "total epoch time (data loading included): eager 10.00 s; `default` 6.00 s (1.67×)" in said
    assert "`default` trains fastest, 2.00× eager" in said
    close = recorded_modes({"eager": _results("eager", 8.0, 10.0), "default": _results("default", 7.8, 9.8)}, 1)
    assert "no real gain" in compiled.speedup_sentence(compiled.modes_table(close), [6, 7, 8, 9, 10])
    alone = recorded_modes({"default": _results("default", 4.0, 6.0)}, 2)
    assert "needs both eager and a compiled mode" in compiled.speedup_sentence(compiled.modes_table(alone), [6])


def test_each_mode_s_sentence_and_a_failure():
    points = recorded_modes(
        {
            "eager": _results("eager", 8.0, 10.0),
            "default": _results("default", 4.0, 6.0, recompiles=1, compiles=2),
            "max-autotune": _results(
                "max-autotune",
                float("nan"),
                float("nan"),
                compile_failed=True,
                compile_error="InductorError: no cc",
                epochs_done=0,
            ),
        }
    )
    table = compiled.modes_table(points).set_index("compile_mode", drop=False)
    window = [6, 7, 8, 9, 10]
    eager = compiled.mode_sentence(table.loc["eager"], window)
    assert "epoch 1's training took 28.00 s (epoch total 30.00 s) against 8.00 ± 0.05 s" in eager
    assert "(total 10.00 ± 0.10 s) as the mean of epochs 6–10" in eager and "nothing is compiled" in eager
    assert "the first-call overhead every mode pays" in eager  # 19 s against a median step of 0.025 s
    even = compiled.mode_sentence({**table.loc["eager"].to_dict(), "first_step_s": 0.026}, window)
    assert "no first-call overhead shows" in even
    default = compiled.mode_sentence(table.loc["default"], window)
    assert "torch compiled 2 graphs" in default and "**18.50 s** with Inductor's caches off" in default
    assert "1 of them recompilations" in default
    failed = compiled.mode_sentence(table.loc["max-autotune"], window)
    assert "compile failed" in failed and "InductorError: no cc" in failed
    assert table.loc["max-autotune", "outcome"] == "compile failed"
    q1, q2, q3 = compiled.conclusions(compiled.modes_table(points), window)
    assert "TorchDynamo" in q1 and "`default` 4.00 s (2.00× eager)" in q2
    assert "max-autotune" not in q2.split("Measured here")[1]  # a failed mode is not compared
    assert "`default`: epoch 1's training is +20.00 s against the steady epochs, of which 18.50 s (92%)" in q3
    longer = compiled.modes_table(recorded_modes({"default": _results("default", 4.0, 6.0, compile_s=25.0)}, seed=3))
    said = compiled.first_epoch_sentence(longer, window)
    assert "the compile torch reports (25.00 s, 1 compile) accounts for all of it" in said
    assert "ran 5.00 s faster than the steady epochs" in said


def test_the_full_batches_and_window_sentences_say_what_was_done():
    said = compiled.full_batches_sentence(80, 50_000, 128)
    assert "(80 of 50,000 images at batch 128) is dropped" in said and "`dynamic=False`" in said
    assert "compiled once" in said and "Eager drops it too" in said
    assert "none is dropped here" in compiled.full_batches_sentence(0, 256, 32)
    assert "as the lab asks" in compiled.window_sentence(10)
    assert "epoch 2 (with 2 epochs instead of the lab's 10" in compiled.window_sentence(2)
    assert "no steady epoch" in compiled.window_sentence(1) and "one epoch, so no spread" in compiled.window_sentence(2)
    assert "with their std over them" in compiled.window_sentence(10)
    assert compiled.epochs_span([6, 7, 8, 9, 10]) == "epochs 6–10" and compiled.epochs_span([2]) == "epoch 2"


def test_the_cuda_graphs_note_depends_on_the_device():
    assert "Inductor skips them" in compiled.cuda_graphs_note("cpu")
    assert "apply on this GPU" in compiled.cuda_graphs_note("cuda")


def test_the_headline_is_the_fastest_steady_training_time_with_its_spread():
    points = recorded_modes({"eager": _results("eager", 8.0, 10.0), "default": _results("default", 4.0, 6.0)})
    answers = compiled.compile_points(compiled.modes_table(points))
    runs = pd.DataFrame([{"run_id": "r1", "ended": "2026-01-01", "status": "complete", "compile_points": answers}])
    (line,) = section_headlines("p25_compile", runs)
    assert line.part == "P-2025-C8" and line.complete and line.value == pytest.approx(4.0)
    assert line.spread == pytest.approx(0.05) and line.unit == "s per epoch"
    assert "default 4.00 ± 0.05 s per epoch" in line.text and "compile 18.5 s" in line.text
    assert "eager 8.00 s" in line.text
    empty = pd.DataFrame([{"run_id": "r2", "ended": "2026-01-02", "status": "complete", "compile_points": []}])
    assert not section_headlines("p25_compile", empty)[0].complete
