"""lablib.sections.hparams: grids, best settings, seed statistics, divergence and E1's sentences."""

import math
from types import SimpleNamespace

import matplotlib
import pandas as pd
import pytest

from lablib.core.errors import ConfigError
from lablib.core.runs import load_runs, start_run
from lablib.sections.hparams import (
    SWEPT,
    accuracy_grid,
    best_sentence,
    best_setting,
    check_scheduler,
    draw_heatmap,
    is_diverged,
    point_sentence,
    points,
    seed_summary,
    seeded,
    seeds_sentence,
    sweep_sentence,
    top_settings,
)

matplotlib.use("Agg")


def records(rows):
    """A load_runs-like frame: one row per run, `ended` in the order given."""
    frame = pd.DataFrame(rows)
    frame["ended"] = [f"2026-01-01T00:00:{i:02d}" for i in range(len(frame))]
    frame["run_id"] = [f"run{i}" for i in range(len(frame))]
    return frame


def run_row(optimizer, lr, scheduler, seed, accuracy, diverged=False, **extra):
    return {
        "optimizer": optimizer,
        "lr": lr,
        "scheduler": scheduler,
        "seed": seed,
        "final_accuracy": accuracy,
        "diverged": diverged,
        **extra,
    }


SAMPLE = records(
    [
        run_row("sgd", 0.01, "none", 0, 50.0),
        run_row("sgd", 0.01, "none", 0, 60.0),  # a re-run of the same point: the latest counts
        run_row("sgd", 1e6, "none", 0, None, True),
        run_row("adam", 0.001, "none", 0, 80.0),
        run_row("adam", 0.001, "onecycle", 0, 90.0),
        run_row("adam", 0.001, "onecycle", 1, 86.0),
        run_row("adam", 0.001, "onecycle", 2, 88.0),
        run_row("adam", 0.001, "none", 1, 70.0),
        run_row("adam", 0.001, "none", 2, math.nan, False),  # no accuracy: counted as diverged
    ]
)


def test_is_diverged():
    assert is_diverged({"diverged": True, "final_accuracy": 50.0})
    assert is_diverged({"diverged": False, "final_accuracy": None})
    assert is_diverged({"diverged": False, "final_accuracy": math.nan})
    assert not is_diverged({"diverged": False, "final_accuracy": 12.5})


def test_points_keep_diverged_and_latest():
    table = points(SAMPLE)
    assert len(table) == 8  # 9 runs, one point run twice
    sgd = table[(table["optimizer"] == "sgd") & (table["lr"] == 0.01)]
    assert sgd["final_accuracy"].tolist() == [60.0] and sgd["run_id"].tolist() == ["run1"]
    diverged = table[table["diverged"]]
    assert len(diverged) == 2 and diverged["final_accuracy"].isna().all()
    assert "adam, lr 0.001, onecycle" in set(table["setting"])


def test_points_of_no_runs_and_wrong_runs():
    assert points(pd.DataFrame()).empty
    with pytest.raises(ConfigError, match="scheduler"):
        points(pd.DataFrame([{"optimizer": "sgd", "lr": 0.1, "seed": 0}]))


def test_accuracy_grid_labels_diverged_and_not_run():
    values, labels = accuracy_grid(points(SAMPLE), "none")
    assert list(values.index) == ["adam", "sgd"] and list(values.columns) == [0.001, 0.01, 1e6]
    assert values.loc["sgd", 0.01] == 60.0 and labels.loc["sgd", 0.01] == "60.0"
    assert math.isnan(values.loc["sgd", 1e6]) and labels.loc["sgd", 1e6] == "diverged"
    assert labels.loc["adam", 0.01] == "not run"
    onecycle, _ = accuracy_grid(points(SAMPLE), "onecycle")
    assert onecycle.loc["adam", 0.001] == 90.0  # the base seed, not the mean over seeds


def test_top_settings_skip_diverged():
    top = top_settings(points(SAMPLE), k=2)
    assert top[["optimizer", "lr", "scheduler"]].values.tolist() == [
        ["adam", 0.001, "onecycle"],
        ["adam", 0.001, "none"],
    ]
    assert len(top_settings(points(SAMPLE), k=10)) == 3  # the diverged point never ranks


def test_seed_summary_statistics():
    summary = seed_summary(points(SAMPLE)).set_index(["optimizer", "lr", "scheduler"])
    onecycle = summary.loc[("adam", 0.001, "onecycle")]
    assert onecycle["seeds"] == 3 and onecycle["diverged"] == 0
    assert onecycle["mean"] == pytest.approx(88.0) and onecycle["std"] == pytest.approx(2.0)
    assert onecycle["spread"] == pytest.approx(4.0) and onecycle["setting"] == "adam, lr 0.001, onecycle"
    assert summary.loc[("adam", 0.001, "none"), "diverged"] == 1


def test_best_setting_prefers_confirmed_and_stable():
    best = best_setting(points(SAMPLE))
    assert (best["optimizer"], best["lr"], best["scheduler"], best["seeds"]) == ("adam", 0.001, "onecycle", 3)
    assert best["mean"] == pytest.approx(88.0)
    single = points(records([run_row("sgd", 0.1, "none", 0, 40.0), run_row("adam", 0.1, "none", 0, 45.0)]))
    assert best_setting(single)["optimizer"] == "adam"
    assert best_setting(points(records([run_row("sgd", 1e6, "none", 0, None, True)]))) is None


def test_draw_heatmap_writes_labels_of_masked_cells():
    import matplotlib.pyplot as plt

    values, labels = accuracy_grid(points(SAMPLE), "none")
    fig, axis = plt.subplots()
    draw_heatmap(axis, values, labels, title="none")
    texts = [t.get_text() for t in axis.texts]
    assert "diverged" in texts and "not run" in texts and "60.0" in texts
    plt.close(fig)


def test_check_scheduler():
    assert check_scheduler("cosine") == "cosine"
    with pytest.raises(ConfigError, match="scheduler='linear'"):
        check_scheduler("linear")


def test_sweep_points_share_a_group_in_the_run_store():
    """start_run(sweep=SWEPT): optimizer, lr and seed do not split the group; epochs do."""
    from lablib.core.config import make_config

    groups = []
    for overrides in (
        {"optimizer": "sgd", "lr": 0.1},
        {"optimizer": "adam", "lr": 0.001, "seed": 3},
        {"optimizer": "sgd", "lr": 0.1, "epochs": 2},
    ):
        run = start_run(
            "e1_hparam_sweep",
            make_config(device="cpu", **overrides),
            params={"scheduler": "none"},
            tag="t",
            device="cpu",
            sweep=SWEPT,
        )
        run.log_results(scheduler="none", final_accuracy=10.0, diverged=False)
        run.finish()
        groups.append(run.meta["group"])
    assert groups[0] == groups[1] != groups[2]
    table = points(load_runs("e1_hparam_sweep", tag="t", group=groups[0]))
    assert sorted(table["optimizer"]) == ["adam", "sgd"]


def test_seeded_keeps_settings_with_several_seeds_best_first():
    rows = seeded(seed_summary(points(SAMPLE)))
    assert rows[["optimizer", "scheduler", "seeds"]].values.tolist() == [["adam", "onecycle", 3], ["adam", "none", 3]]
    assert rows["mean"].tolist() == [pytest.approx(88.0), pytest.approx(75.0)]
    single = points(records([run_row("sgd", 0.1, "none", 0, 40.0)]))
    assert seeded(seed_summary(single)).empty


def test_sentences_carry_the_records_numbers():
    table = points(SAMPLE)
    sweep = sweep_sentence(table)
    assert "8 point(s)" in sweep and "4 setting(s)" in sweep and "seeds 0, 1, 2" in sweep and "2 diverged" in sweep
    assert "sgd, lr 1e+06, none` seed 0" in sweep
    best = best_setting(table)
    text = best_sentence(best)
    assert "`adam`" in text and "onecycle" in text and "88.00" in text and "3 seeds" in text and "2.00" in text
    assert "diverged" in best_sentence(None)
    rows = seeded(seed_summary(table))
    text = seeds_sentence(rows)
    assert text.count("±") == 2 and "88.00 ± 2.00 % over 3 seeds (spread 4.00)" in text and "1 diverged" in text
    assert "±" not in seeds_sentence(rows.iloc[:0])


def test_point_sentence_says_diverged_or_the_accuracy():
    from lablib.core.config import make_config

    config = make_config(optimizer="adam", lr=0.001, seed=2)
    epoch = SimpleNamespace(loss=0.25)
    model = SimpleNamespace()
    good = SimpleNamespace(
        model=model, epochs=[epoch, epoch], diverged=False, test=SimpleNamespace(accuracy=97.125, images=500)
    )
    text = point_sentence(config, "cosine", good, 1024, "cpu")
    assert "`adam`" in text and "lr 0.001" in text and "seed 2" in text and "1,024" in text and "2 epoch" in text
    assert "97.12" in text and "500 test images" in text and "0.250" in text
    bad = SimpleNamespace(model=model, epochs=[SimpleNamespace(loss=math.nan)], diverged=True, test=None)
    assert "diverged" in point_sentence(config, "none", bad, 1024, "cpu") and "%" not in point_sentence(
        config, "none", bad, 1024, "cpu"
    )
