"""lablib.sections.hparams: the sweep's points, grids, best settings, seed statistics and divergence."""

import math

import matplotlib
import pandas as pd
import pytest

from lablib.core.errors import ConfigError
from lablib.core.runs import load_runs, start_run
from lablib.sections.hparams import (
    PROFILES,
    SWEPT,
    accuracy_grid,
    best_setting,
    check_scheduler,
    draw_heatmap,
    grid,
    is_diverged,
    pending,
    points,
    seed_summary,
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


def test_grid_quick_and_full_without_records():
    quick = grid("quick", mnist="digits.zip")
    plan = PROFILES["quick"]
    assert len(quick) == len(plan["optimizers"]) * len(plan["lrs"]) * len(plan["schedulers"])
    assert {p["data"] for p in quick} == {"digits.zip"} and {p["seed"] for p in quick} == {0}
    assert all(p["epochs"] == 1 and p["limit_train"] > 0 for p in quick)
    full = grid("full", mnist="digits.zip", cifar10="cifar10")
    assert len(full) == 2 * 5 * 5 * 4
    assert {p["optimizer"] for p in full} == {"sgd", "sgd_nesterov", "adam", "adamw", "rmsprop"}
    assert {p["scheduler"] for p in full} == {"none", "step", "cosine", "onecycle"}
    assert min(p["lr"] for p in full) == 1e-4 and max(p["lr"] for p in full) == 1.0
    with pytest.raises(ConfigError, match="profile='huge'"):
        grid("huge")


def quick_records(coarse, accuracy_of):
    rows = [
        run_row(
            p["optimizer"],
            p["lr"],
            p["scheduler"],
            p["seed"],
            accuracy_of(p),
            data=p["data"],
            epochs=p["epochs"],
            limit_train=p["limit_train"],
        )
        for p in coarse
    ]
    return records(rows)


def test_grid_adds_seeds_for_the_best_few_once_the_coarse_grid_is_done():
    coarse = grid("quick", mnist="digits.zip")
    scores = {(p["optimizer"], p["lr"], p["scheduler"]): 10.0 + i for i, p in enumerate(coarse)}
    done = quick_records(coarse, lambda p: scores[(p["optimizer"], p["lr"], p["scheduler"])])
    listed = grid("quick", done, mnist="digits.zip")
    extra = listed[len(coarse) :]
    best3 = sorted(scores, key=scores.get, reverse=True)[:3]
    assert len(extra) == 3 * 2 and {p["seed"] for p in extra} == {1, 2}
    assert {(p["optimizer"], p["lr"], p["scheduler"]) for p in extra} == set(best3)
    assert pending(listed, done) == extra  # only the re-seeded points are left to run
    # half a coarse grid gives no re-seeding yet; another data source's records do not count
    assert len(grid("quick", done.iloc[:5], mnist="digits.zip")) == len(coarse)
    assert len(grid("quick", done, mnist="other.zip")) == len(coarse)


def test_grid_never_reseeds_a_diverged_point():
    coarse = grid("quick", mnist="digits.zip")
    done = quick_records(coarse, lambda p: None if p["lr"] == 0.1 else 50.0 + 100 * p["lr"])
    extra = grid("quick", done, mnist="digits.zip")[len(coarse) :]
    assert extra and all(p["lr"] != 0.1 for p in extra)


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


def test_command_line_lists_pending_points(capsys):
    import json

    from lablib.sections.hparams import main

    assert main(["quick", "--mnist", "digits.zip"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(listed) == len(grid("quick")) and {p["tag"] for p in listed} == {"quick"}
    assert listed[0]["data"] == "digits.zip" and "optimizer" in listed[0]
