"""lablib.sections.halving, hparams and factors: E1's grid and budget planner on recorded fakes, its per-factor
tables and sentences, the best setting with its seeds, and the headlines."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import matplotlib
import pandas as pd
import pytest
from factories import epoch_rows, record_measurement

from lablib.core.errors import ConfigError
from lablib.core.store import lookup
from lablib.sections import halving
from lablib.sections.factors import LARGE_GAP, NEAR_CHANCE, SMALL_EFFECT, factor_sentence, factor_table
from lablib.sections.halving import DIVERGED, ETA_MIN, FINISHED, NOT_TRAINED, PRUNED, STOPPED
from lablib.sections.hparams import (
    CIFAR_SECTION,
    MNIST_SECTION,
    accuracy_grid,
    best_sentence,
    best_setting,
    budget_sentence,
    comparison_epochs,
    divergence_sentence,
    draw_heatmap,
    e1_grid,
    e1_measurements,
    e1_section,
    e1_walk,
    engine_sentence,
    fate_text,
    grid_points,
    headlines_for,
    rungs_table,
    seed_points,
    seed_summary,
    seeds_sentence,
)

matplotlib.use("Agg")

BASE = {
    "device": "cpu",
    "data": "fake",
    "epochs": 9,
    "optimizers": "sgd,adam,rmsprop",
    "lrs": "0.01,0.1,1.0",
    "schedulers": "cosine",
    "top": 2,
    "seeds": 2,
    "budget_s": 0.0,
    "engine": "fast",
}


def params(**overrides):
    return {**BASE, **overrides}


def accuracy_by_lr(settings, epochs, seed):
    """A grid where lr 0.1 is best, adam better than sgd; more epochs help; lr 1.0 with adam diverges."""
    if settings["optimizer"] == "adam" and settings["lr"] == 1.0:
        return None
    lr_part = {0.001: 50.0, 0.01: 60.0, 0.1: 80.0, 1.0: 40.0}[settings["lr"]]
    optimizer_part = {"sgd": 0.0, "adam": 5.0, "rmsprop": 2.0, "adamw": 4.0}[settings["optimizer"]]
    return lr_part + optimizer_part + 2.0 * epochs + 0.5 * seed


Accuracy = Callable[[dict, int, int], float | None]


def record_point(request, accuracy: Accuracy, epoch_s: float = 1.0, overhead_s: float = 0.5):
    """Record a training request the way measure_training would: its epochs, times and test accuracy."""
    settings = request.settings
    stop = int(settings.get("stop_after") or settings["epochs"])
    own = stop - int(settings.get("continue_from") or 0)
    value = accuracy(settings, stop, settings["seed"])
    results = {
        "epochs_run": 1 if value is None else stop,
        "epoch_s_mean": epoch_s,
        "wall_s": own * epoch_s + overhead_s,
        "diverged": value is None,
        "resumed_from_epoch": int(settings.get("continue_from") or 0),
        **({} if value is None else {"test_accuracy": value, "test_loss": 1.0}),
    }
    return record_measurement(request, results=results, epochs=epoch_rows(results["epochs_run"], 0.0, epoch_s))


def realize(given, accuracy: Accuracy = accuracy_by_lr, timing=lambda request: (1.0, 0.5), rounds: int = 500):
    """What lablib.sections.setup.realize does, with recorded fakes instead of trainings: every request listed,
    in order; returns the requests measured (in order) and the final walk."""
    measured = []
    for _ in range(rounds):
        needs = e1_measurements(given, lookup)
        missing = [request for request in needs.requests if lookup(request) is None]
        if not missing:
            assert needs.waiting == ""
            return measured, e1_walk(given, lookup)[1]
        for request in missing:
            record_point(request, accuracy, *timing(request))
            measured.append(request)
    raise AssertionError("the walk did not complete")


def within_one_point(walk, measured) -> bool:
    """The walk ended inside its budget, give or take its last point (each started only while it fit)."""
    return walk.spent_s - lookup(measured[-1]).results["wall_s"] <= walk.budget_s


def stop_of(request):
    return int(request.settings.get("stop_after") or request.settings["epochs"])


# --- the parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("optimizers", "sgd,turbo", "turbo unknown"),
        ("optimizers", " , ", "is empty"),
        ("lrs", "0.1,-1", "'-1' is not a learning rate"),
        ("lrs", "fast", "'fast' is not a learning rate"),
        ("schedulers", "none,linear", "linear unknown"),
        ("budget_s", -5.0, "budget_s=-5.0"),
        ("top", 0, "top=0"),
        ("seeds", 1.5, "seeds=1.5"),
        ("engine", "turbo", "engine='turbo'"),
    ],
)
def test_bad_parameters_are_one_line_errors_naming_the_value(name, value, words):
    with pytest.raises(ConfigError) as error:
        e1_grid(params(**{name: value}))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_grid_is_optimiser_major_and_the_fast_engine_has_no_workers():
    grid = e1_grid(params(workers=2))
    labels = [setting.label() for setting in grid.settings[:3]]
    assert labels == ["sgd, lr 0.01, cosine", "sgd, lr 0.1, cosine", "sgd, lr 1, cosine"]
    assert len(grid.settings) == 9 and grid.config.workers == 0 and grid.config.seed == 0
    request = grid.request(1, seed=2, stop=3, after=1)
    settings = request.settings
    assert (settings["optimizer"], settings["lr"], settings["scheduler"], settings["seed"]) == ("sgd", 0.1, "cosine", 2)
    assert settings["engine"] == "fast" and settings["stop_after"] == 3 and settings["continue_from"] == 1
    assert not request.timing and not settings["save_weights"]
    assert e1_grid(params(engine="faithful", workers=2)).config.workers == 2


def test_the_section_comes_from_the_parameter_the_job_or_the_data(monkeypatch):
    monkeypatch.delenv("LABLIB_SECTION", raising=False)
    assert e1_section({"data": "mnist"}) == MNIST_SECTION
    assert e1_section({"data": "/data/mnist-png.zip"}) == MNIST_SECTION
    assert e1_section({"data": "cifar10"}) == CIFAR_SECTION
    assert e1_section({"data": "mnist", "section_name": CIFAR_SECTION}) == CIFAR_SECTION
    monkeypatch.setenv("LABLIB_SECTION", CIFAR_SECTION)
    assert e1_section({"data": "mnist"}) == CIFAR_SECTION
    with pytest.raises(ConfigError, match="section_name='c5_optimizers'"):
        e1_section({"section_name": "c5_optimizers"})


# --- no budget: the whole grid, then the re-runs ---------------------------------------------------


def test_without_a_budget_every_setting_trains_its_epochs_then_the_best_get_more_seeds():
    given = params(epochs=2)
    first = e1_measurements(given, lookup)
    assert len(first.requests) == 9 and first.waiting  # the grid at once; the re-runs wait for it
    assert all("stop_after" not in r.settings and r.settings["seed"] == 0 for r in first.requests)
    measured, walk = realize(given)
    assert len(measured) == 9 + 2 * 2 and walk.complete
    assert {f.outcome for f in walk.fates} == {FINISHED, DIVERGED}
    grid = e1_grid(given)
    chosen = [grid.settings[i].label() for i in walk.chosen]
    assert chosen == ["adam, lr 0.1, cosine", "rmsprop, lr 0.1, cosine"]  # the two best by test accuracy
    assert sorted((r.settings["optimizer"], r.settings["seed"]) for r in measured[9:]) == [
        ("adam", 1),
        ("adam", 2),
        ("rmsprop", 1),
        ("rmsprop", 2),
    ]
    again = e1_measurements(given, lookup)  # a second execution: everything recorded, nothing to train
    assert [r.key for r in again.requests] == [r.key for r in first.requests] + [r.key for r in measured[9:]]
    assert all(lookup(r) is not None for r in again.requests) and again.waiting == ""


# --- successive halving ----------------------------------------------------------------------------


def test_every_setting_trains_rung_zero_and_the_best_half_goes_on():
    given = params(budget_s=60.0, seeds=0)
    measured, walk = realize(given)
    rung_zero = [r for r in measured if stop_of(r) == 1]
    assert len(rung_zero) == 9
    assert all("continue_from" not in r.settings for r in rung_zero)  # from the start
    later = [r for r in measured if stop_of(r) > 1]
    assert later and all(r.settings.get("continue_from") for r in later)  # continued, never started over
    rung_one = [r for r in later if r.settings["continue_from"] == 1]
    live = 9 - 1  # adam at lr 1.0 diverged
    assert 1 <= len(rung_one) <= max(1, live // ETA_MIN)
    grid = e1_grid(given)
    first_epoch = [(accuracy_by_lr(vars(setting), 1, 0) or -1.0, setting) for setting in grid.settings]
    best = [setting for _, setting in sorted(first_epoch, key=lambda pair: -pair[0])[: len(rung_one)]]
    assert {(r.settings["optimizer"], r.settings["lr"]) for r in rung_one} == {(s.optimizer, s.lr) for s in best}
    assert walk.rungs[0].trained == 9 and walk.rungs[0].continued == len(rung_one)
    pruned = [f for f in walk.fates if f.outcome == PRUNED and f.rung == 0]
    assert pruned and all(f.rank > len(rung_one) and f.ranked == live for f in pruned)
    assert any(f.outcome == FINISHED and f.epochs == 9 for f in walk.fates)
    # the finished training continued up to the whole schedule: the same key as one never stopped
    best = next(f for f in walk.fates if f.outcome == FINISHED)
    assert best.key == grid.request(best.index).key


def test_a_budget_that_fits_the_whole_grid_trains_every_setting_to_the_end_once_the_first_epoch_shows_it():
    given = params(budget_s=1000.0, seeds=0)
    measured, walk = realize(given)
    assert walk.whole and not walk.halving
    assert [(rung.epochs, rung.trained, rung.eta) for rung in walk.rungs] == [(1, 9, None), (9, 1, 1)]
    assert {f.outcome for f in walk.fates} == {FINISHED, DIVERGED} and walk.spent_s < 1000.0
    assert not any(r.settings.get("drop_checkpoints") for r in measured)  # every setting could go on
    grid = e1_grid(given)
    first, *others = measured
    assert stop_of(first) == 1 and measured[-1].settings["continue_from"] == 1  # the first went on from epoch 1
    assert [r.key for r in measured[1:-1]] == [grid.request(i).key for i in range(1, 9)]  # the others: once, whole
    assert "the whole grid fits it, so every one of the 9 settings trained its 9 epochs" in budget_sentence(walk)
    assert rungs_table(walk)["epochs"].tolist() == ["1 (the first), 9 (the others)", "9"]
    assert comparison_epochs(walk) == 9  # every setting is compared at its final accuracy
    points = grid_points(grid, walk)
    finished = points[points["outcome"].str.startswith("finished")]
    assert finished["test_accuracy"].tolist() == finished["final_test_accuracy"].tolist()


def test_the_walks_clock_expects_no_compile_again_in_the_same_process():
    clock = halving._Clock()
    request = e1_grid(params()).request(0)
    first = record_measurement(request, results={"epoch_s_mean": 2.0, "wall_s": 50.0, "compile_s": 45.0})
    clock.add(first, 1)
    assert clock.spent_s == 50.0 and clock.overhead == 3.0 and clock.cost(5) == 13.0  # spent, but not expected again


def test_a_budget_that_fits_only_by_halving_keeps_comparing_after_the_first_epoch():
    _, walk = realize(params(budget_s=60.0, seeds=0))
    assert not walk.whole and walk.halving and comparison_epochs(walk) == 1


@pytest.mark.parametrize("budget", [60.0, 200.0])  # halving; the whole grid at once
def test_a_diverged_setting_stops_at_once_and_never_goes_on(budget):
    given = params(budget_s=budget, seeds=0)
    measured, walk = realize(given)
    adam_big = [r for r in measured if r.settings["optimizer"] == "adam" and r.settings["lr"] == 1.0]
    assert len(adam_big) == 1 and stop_of(adam_big[0]) == (9 if walk.whole else 1)
    labels = [setting.label() for setting in e1_grid(given).settings]
    fate = walk.fates[labels.index("adam, lr 1, cosine")]
    assert fate.outcome == DIVERGED and fate.rank == 0 and fate_text(fate, walk).startswith("diverged in epoch 1")
    assert walk.whole == (budget == 200.0)


@pytest.mark.parametrize("budget", [4.0, 12.0, 25.0, 60.0, 150.0])
def test_the_grid_fits_its_budget_within_one_point(budget):
    given = params(budget_s=budget, seeds=1, top=2)
    measured, walk = realize(given)
    assert walk.spent_s == pytest.approx(sum(lookup(r).results["wall_s"] for r in measured))
    assert within_one_point(walk, measured)
    trained = sum(f.rung >= 0 for f in walk.fates)
    if budget < 9 * 1.5:  # rung 0 alone takes 9 x 1.5 s
        assert any(f.outcome == NOT_TRAINED for f in walk.fates) and walk.rungs[0].trained == trained < 9
        assert walk.spent_s <= budget + 1.5
        assert "only" in budget_sentence(walk) and "not trained" in budget_sentence(walk)
    else:
        assert trained == 9


def test_a_larger_budget_trains_more_and_reuses_what_a_smaller_one_recorded():
    small_measured, small = realize(params(budget_s=25.0, seeds=0))
    large_measured, large = realize(params(budget_s=150.0, seeds=0))
    finished = lambda walk: sum(f.outcome == FINISHED for f in walk.fates)  # noqa: E731
    assert finished(large) >= finished(small) and large.spent_s > small.spent_s
    assert not {r.key for r in large_measured} & {r.key for r in small_measured}  # nothing trained twice
    started = {(r.settings["optimizer"], r.settings["lr"], r.settings["scheduler"]) for r in small_measured}
    from_scratch = [r for r in large_measured if not r.settings.get("continue_from")]
    assert large.whole and not any(  # a first epoch a smaller budget recorded goes on from its checkpoint
        (r.settings["optimizer"], r.settings["lr"], r.settings["scheduler"]) in started for r in from_scratch
    )


def test_the_rungs_are_replanned_when_epochs_are_slower_than_estimated(monkeypatch, tmp_path):
    given = params(budget_s=30.0, seeds=0)

    def slower_later(request):  # rung 0 at 1 s per epoch, every continued epoch 4 s
        return (4.0 if request.settings.get("continue_from") else 1.0), 0.5

    _, steady = realize(given)
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(tmp_path / "another store"))
    measured, slow = realize(given, timing=slower_later)
    assert within_one_point(slow, measured)
    assert sum(f.epochs for f in slow.fates) < sum(f.epochs for f in steady.fates)  # fewer epochs fit
    assert [(r.epochs, r.trained) for r in steady.rungs] == [(1, 9), (2, 4), (4, 2), (9, 1)]
    assert len(slow.rungs) < len(steady.rungs) and slow.rungs[1].trained == 4  # planned at 1 s, then cut


def test_a_planned_rung_that_turns_out_too_slow_stops_when_the_budget_is_spent():
    given = params(budget_s=30.0, seeds=0)

    def much_slower_later(request):
        return (20.0 if request.settings.get("continue_from") else 1.0), 0.5

    measured, walk = realize(given, timing=much_slower_later)
    assert within_one_point(walk, measured) and not any(f.outcome == FINISHED for f in walk.fates)
    stopped = [f for f in walk.fates if f.outcome == STOPPED]
    assert stopped and all("the budget was spent" in fate_text(f, walk) for f in stopped)
    assert "stopped when the budget was spent" in budget_sentence(walk)
    # a setting stopped mid-rung was not ranked there; one chosen but not reached keeps its rank
    texts = [fate_text(f, walk) for f in stopped]
    assert any(t == "stopped after rung 1 (2 epochs): the budget was spent" for t in texts)
    assert any(t.startswith("stopped after rung 0 (1 epoch): the budget was spent; ranked") for t in texts)


def test_dropped_checkpoints_are_never_continued_and_few_are_kept_at_once():
    given = params(optimizers="sgd,adam,rmsprop,adamw", lrs="0.001,0.01,0.1", schedulers="none,cosine")
    given = {**given, "budget_s": 200.0, "seeds": 0}
    measured, walk = realize(given)
    grid = e1_grid(given)
    places = {(s.optimizer, s.lr, s.scheduler): i for i, s in enumerate(grid.settings)}
    dropped: set[str] = set()
    alive: set[str] = set()  # checkpoints on disk: a stopped training's, until it is continued or dropped
    peak = 0
    for request in measured:
        settings = request.settings
        dropped.update(settings.get("drop_checkpoints", ()))
        alive -= set(settings.get("drop_checkpoints", ()))
        after = settings.get("continue_from")
        if after:
            index = places[(settings["optimizer"], settings["lr"], settings["scheduler"])]
            earlier = grid.request(index, stop=after, after=0).key
            assert earlier not in dropped  # a checkpoint the walk dropped is never the one continued
            alive.discard(earlier)
        if "stop_after" in settings and not lookup(request).results["diverged"]:
            alive.add(request.key)
        peak = max(peak, len(alive))
    assert len(grid.settings) == 24 and peak <= 24 // ETA_MIN + 2


def test_reruns_run_only_as_far_as_the_budget_allows():
    given = params(budget_s=25.0, seeds=2, top=2, epochs=3, optimizers="sgd,adam", lrs="0.1", schedulers="none")
    measured, walk = realize(given, timing=lambda request: (2.0, 0.5))
    reruns = [r for r in measured if r.settings["seed"] > 0]
    assert len(walk.chosen) == 2 and len(reruns) >= 1 and walk.reruns_skipped >= 1
    assert len(reruns) + walk.reruns_skipped == 4 and reruns[0].settings["optimizer"] == "adam"  # the best first
    assert within_one_point(walk, measured) and walk.reserve_s == 0  # too dear to set aside: only if time is left
    assert "they run only as far as time is left" in budget_sentence(walk)
    summary = seed_summary(seed_points(e1_grid(given), walk))
    assert f"The budget did not allow {walk.reruns_skipped} of the 4 re-runs." in seeds_sentence(summary, walk)


def test_one_epoch_with_a_budget_trains_the_grid_then_the_reruns():
    given = params(budget_s=100.0, epochs=1, optimizers="sgd,adam", lrs="0.01", schedulers="none", top=2, seeds=2)
    measured, walk = realize(given)
    assert not walk.halving and comparison_epochs(walk) == 1
    assert all("stop_after" not in r.settings for r in measured)  # one epoch is the whole training
    assert len(measured) == 2 + 4 and "nothing to halve" in budget_sentence(walk)


def test_a_dry_run_without_accuracies_ranks_in_grid_order():
    given = params(budget_s=40.0, seeds=0, optimizers="sgd,adam", lrs="0.01,0.1", schedulers="none")
    measured, walk = realize(given, accuracy=lambda settings, epochs, seed: math.nan)
    assert walk.complete and walk.rungs[0].trained == 4
    continued = [r for r in measured if r.settings.get("continue_from")]
    assert continued and continued[0].settings["optimizer"] == "sgd" and continued[0].settings["lr"] == 0.01


def test_rung_schedule_and_its_cost():
    assert halving.rung_schedule(27, 1, 9, 3) == [(3, 9), (9, 3)]
    assert halving.rung_schedule(2, 1, 3, 3) == [(3, 1)]
    assert halving.rung_schedule(10, 1, 20, 3) == [(3, 3), (20, 1)]  # 9 epochs would prune nobody
    assert halving.rung_schedule(8, 1, 9, 2) == [(2, 4), (4, 2), (9, 1)]  # 8 epochs: just short of 9
    assert halving.schedule_cost([(3, 9), (9, 3)], 1, 1.0, 0.5) == pytest.approx(9 * 2.5 + 3 * 6.5)


# --- the presented grid --------------------------------------------------------------------------


SCHEDULED = params(
    epochs=2, optimizers="sgd,adam", lrs="0.01,0.1,1.0", schedulers="none,cosine", top=2, seeds=2, budget_s=0.0
)


def scheduled_accuracy(settings, epochs, seed):
    """lr 1.0 diverges with both optimisers; cosine adds 0.8 points; sgd at lr 0.01 does not learn."""
    if settings["lr"] == 1.0:
        return None
    cosine = 0.8 if settings["scheduler"] == "cosine" else 0.0
    if settings["optimizer"] == "sgd" and settings["lr"] == 0.01:
        return 12.0 + cosine
    base = {"sgd": 80.0, "adam": 90.0}[settings["optimizer"]] + {0.01: 0.0, 0.1: 2.0}[settings["lr"]]
    return base + cosine + 0.5 * seed


@pytest.fixture
def presented():
    _, walk = realize(SCHEDULED, accuracy=scheduled_accuracy)
    grid = e1_grid(SCHEDULED)
    return grid, walk, grid_points(grid, walk)


def test_grid_points_and_the_heatmap_labels(presented):
    grid, walk, points = presented
    assert len(points) == 12 and points["trained"].all()
    assert points["diverged"].sum() == 4 and points.loc[points["diverged"], "test_accuracy"].isna().all()
    values, labels = accuracy_grid(points, "cosine")
    assert list(values.index) == ["sgd", "adam"] and list(values.columns) == [0.01, 0.1, 1.0]
    assert values.loc["adam", 0.1] == pytest.approx(92.8) and labels.loc["adam", 0.1] == "92.8"
    assert labels.loc["sgd", 1.0] == "diverged" and math.isnan(values.loc["sgd", 1.0])
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    draw_heatmap(axis, values, labels, title="cosine")
    assert "diverged" in [t.get_text() for t in axis.texts]
    plt.close(figure)
    budgeted = points.copy()
    budgeted.loc[0, "trained"] = False
    _, labels = accuracy_grid(budgeted, "none")
    assert labels.loc["sgd", 0.01] == "not trained"


def test_factor_tables_and_sentences(presented):
    _, walk, points = presented
    table = factor_table(points, "scheduler").set_index("scheduler")
    assert table.loc["cosine", "settings"] == 6 and table.loc["cosine", "diverged"] == 2
    assert table.loc["cosine", "mean difference from its group (%)"] == pytest.approx(0.4)
    assert table.loc["none", "mean difference from its group (%)"] == pytest.approx(-0.4)
    scheduler = factor_sentence(points, "scheduler", comparison_epochs(walk))
    assert "after 2 epochs" in scheduler and "at most 0.8 points: it hardly matters" in scheduler
    assert 0.8 < SMALL_EFFECT and "`cosine` is best on average (+0.4 points" in scheduler
    assert "`none` lowest (-0.4)" in scheduler
    optimizer = factor_sentence(points, "optimizer", 2)
    assert "by up to 78.0 points (median 44.0 over 4 pairs of settings)" in optimizer
    assert "`adam` is best on average (+22.0 points" in optimizer and "`sgd` much lower (-22.0)" in optimizer
    assert LARGE_GAP < 22.0
    lr = factor_sentence(points, "lr", 2)
    assert "lr 1 diverged in 4 of 4 settings" in lr
    assert f"lr 0.01 stayed near chance (at most {10 + NEAR_CHANCE:.0f} %) in 2 of 4" in lr
    rows = factor_table(points, "lr").set_index("learning rate")
    assert rows.loc["1", "diverged"] == 4 and pd.isna(rows.loc["1", "mean test top-1 (%)"])
    assert rows.loc["0.01", "near chance"] == 2 and rows.loc["0.1", "best of them"] == "adam, lr 0.1, cosine"


def test_a_factor_with_one_value_is_not_measured():
    _, walk = realize(params(epochs=1, optimizers="sgd,adam", lrs="0.01", schedulers="onecycle", seeds=0))
    points = grid_points(e1_grid(params(epochs=1, optimizers="sgd,adam", lrs="0.01", schedulers="onecycle")), walk)
    assert "one value (lr 0.01) was trained" in factor_sentence(points, "lr", 1)
    assert "one value (`onecycle`)" in factor_sentence(points, "scheduler", 1)


def test_divergence_is_named(presented):
    _, walk, points = presented
    text = divergence_sentence(points, walk)
    assert text.startswith("**E1.2:** 4 of the 12") and "`sgd, lr 1, none` (epoch 1)" in text
    calm = dataclasses.replace(walk, fates=tuple(dataclasses.replace(f, outcome=FINISHED) for f in walk.fates))
    assert "none of the 12" in divergence_sentence(points, calm)


def test_the_best_setting_with_its_seed_spread(presented):
    grid, walk, _ = presented
    seeds = seed_points(grid, walk)
    assert len(seeds) == 2 * 3 and set(seeds["seed"]) == {0, 1, 2}
    summary = seed_summary(seeds)
    best = best_setting(summary)
    assert best["setting"] == "adam, lr 0.1, cosine" and best["seeds"] == 3
    assert best["mean"] == pytest.approx(93.3) and best["std"] == pytest.approx(0.5)
    assert (best["min"], best["max"]) == (pytest.approx(92.8), pytest.approx(93.8))
    text = best_sentence(best, 2)
    assert "`adam` with lr 0.1 and scheduler `cosine`: test top-1 93.30 %" in text and "3 seeds, std 0.50" in text
    assert "there is no best setting" in best_sentence(None, 2)
    said = seeds_sentence(summary, walk)
    assert said.count("±") == 2 and "`adam, lr 0.1, cosine`: 93.30 ± 0.50 % over 3 seeds" in said


def test_fates_say_how_far_and_why():
    walk = halving.Walk((), True, "", (), (), (), (), 9, 60.0, 50.0)
    assert fate_text(halving.Fate(0, FINISHED, 9, 2), walk) == "finished (9 epochs)"
    pruned = fate_text(halving.Fate(0, PRUNED, 3, 1, 4, 9), walk)
    assert pruned == "pruned after rung 1 (3 epochs): ranked 4 of 9 by test accuracy"
    stopped = fate_text(halving.Fate(0, STOPPED, 1, 0, 2, 5), walk)
    assert stopped == "stopped after rung 0 (1 epoch): the budget was spent; ranked 2 of 5 by test accuracy"
    assert fate_text(halving.Fate(0, NOT_TRAINED), walk) == "not trained: the budget was spent in rung 0"


def test_budget_sentences():
    _, walk = realize(params(budget_s=60.0, seeds=0))
    text = budget_sentence(walk)
    assert text.startswith("**E1.1:** a budget of 60 s")
    assert "every one of the 9 settings trained its first epoch" in text
    assert f"η >= {ETA_MIN}" in text and "pruned" in text
    _, whole = realize(params(epochs=1, seeds=0))
    assert budget_sentence(whole).startswith("**E1.1:** no time budget: every one of the 9 settings trained 1 epoch")


def test_the_engine_sentence_comes_from_the_measurements():
    given = params(epochs=1, optimizers="sgd", lrs="0.1", schedulers="none", seeds=0)
    realize(given)
    measured = [lookup(r) for r in e1_measurements(given, lookup).requests]
    text = engine_sentence(measured)
    assert "the fast engine on `cpu`" in text and "fp32 arithmetic" in text and "not compiled" in text
    assert "channels_last" in text
    assert engine_sentence([]) == "No point of the grid is recorded yet."


# --- headlines -------------------------------------------------------------------------------------


def answers_row(**overrides):
    row = {
        "run_id": "r1",
        "ended": "2026-01-01T00:00:00",
        "status": "complete",
        "model_class": "SmallCNN",
        "grid_settings": 20,
        "settings_trained": 20,
        "settings_finished": 3,
        "full_epochs": 5,
        "budget_s": 120.0,
        "best_setting": "adam, lr 0.001, cosine",
        "best_accuracy": 99.1,
        "best_std": 0.08,
        "best_seeds": 3,
        "grid_engine": "fast",
        "grid_precision": "bf16",
    }
    return pd.DataFrame([{**row, **overrides}])


def test_headlines_name_the_best_its_seed_spread_and_what_the_budget_allowed():
    (line,) = headlines_for(MNIST_SECTION)(answers_row())
    assert line.part == "E1" and line.value == 99.1 and line.unit == "%" and line.spread == 0.08
    assert "SmallCNN: best adam, lr 0.001, cosine, 99.10 ± 0.08 % test top-1 over 3 seeds after 5 epochs" in line.text
    assert "after 5 epochs (fast engine, bf16); 3 of 20 settings trained 5 epochs within a 120 s" in line.text
    (line,) = headlines_for(CIFAR_SECTION)(answers_row(budget_s=0.0, best_std=None, best_seeds=1))
    assert line.section == CIFAR_SECTION and "no budget" in line.text and "±" not in line.text
    (line,) = headlines_for(MNIST_SECTION)(answers_row(best_setting=None, best_accuracy=None))
    assert not line.complete and "no setting finished" in line.text


def test_the_best_setting_is_confirmed_over_the_most_seeds_and_never_diverged():
    seeds = pd.DataFrame(
        [
            {"optimizer": "sgd", "lr": 0.1, "scheduler": "none", "setting": "a", "seed": 0, "test_accuracy": 95.0},
            {"optimizer": "sgd", "lr": 0.1, "scheduler": "none", "setting": "a", "seed": 1, "test_accuracy": None},
            {"optimizer": "adam", "lr": 0.01, "scheduler": "none", "setting": "b", "seed": 0, "test_accuracy": 90.0},
            {"optimizer": "adam", "lr": 0.01, "scheduler": "none", "setting": "b", "seed": 1, "test_accuracy": 92.0},
            {"optimizer": "adamw", "lr": 0.01, "scheduler": "none", "setting": "c", "seed": 0, "test_accuracy": 99.0},
        ]
    ).assign(diverged=lambda frame: frame["test_accuracy"].isna())
    summary = seed_summary(seeds).set_index("setting")
    assert summary.loc["a", "diverged"] == 1 and summary.loc["a", "mean"] == 95.0  # the diverged seed is not averaged
    assert summary.loc["b", "std"] == pytest.approx(math.sqrt(2.0)) and summary.loc["b", "spread"] == 2.0
    assert math.isnan(summary.loc["c", "std"])  # one seed: no spread
    best = best_setting(seed_summary(seeds))
    assert best["setting"] == "b"  # "c" has one seed, "a" diverged once
    assert best_setting(seed_summary(seeds[seeds["setting"] == "a"])) is None


def test_the_planner_notes_what_the_grid_is():
    (note,) = e1_measurements(params(), lookup).notes
    assert (
        note
        == "9 settings, each a measurement of its own on the fast engine; no budget: every setting trains its epochs."
    )
    (note,) = e1_measurements(params(budget_s=90.0, engine="faithful"), lookup).notes
    assert "on the faithful engine; a budget of 90 s: successive halving" in note
