"""E1 (the hyper-parameter sweep) executed by papermill on real digits and colour images, with and without a
time budget, in one run store: one measurement per point, and an execution that finds them recorded trains
nothing."""

from __future__ import annotations

import json
from collections import Counter

from conftest import notebook_images, notebook_text, reads_well

from lablib.core.runs import load_runs
from lablib.core.store import lookup, store_root
from lablib.core.training import CHECKPOINT
from lablib.sections.halving import FINISHED, NOT_TRAINED, STOPPED
from lablib.sections.headlines import section_headlines
from lablib.sections.hparams import CIFAR_SECTION, MNIST_SECTION, e1_walk, fate_text

# The quick profile's E1 parameters (report/plan.yaml), on the CPU; CIFAR-10 on a smaller subset (ResNet-18 on
# 2 CPU cores takes about 20 s per 100 training images).
QUICK = {"workers": 0, "optimizers": "sgd,adam", "lrs": "0.01", "top": 2, "seeds": 2, "device": "cpu", "tag": "test"}
QUICK_MNIST = {**QUICK, "limit_train": 1024, "limit_test": 500, "schedulers": "onecycle", "epochs": 1}
QUICK_CIFAR = {**QUICK, "limit_train": 128, "limit_test": 50, "batch_size": 32, "schedulers": "none", "epochs": 1}
TABLES = 6  # the rungs, the settings' fates, one per factor (3), the re-run settings' seeds


def recorded_keys() -> Counter:
    """How many complete measurements each training key has in the test's store."""
    keys = Counter()
    for path in (store_root() / "training").glob("*/run.json"):
        meta = json.loads(path.read_text())
        if meta.get("status") == "complete":
            keys[meta["key"]] += 1
    return keys


def test_e1_grids_on_digits_and_colour_images_with_and_without_a_budget(run_notebook, mnist_zip, cifar_zip):
    # MNIST, no budget: the grid (2 settings) at its epochs, then its 2 best again with seeds 1 and 2
    grid_params = {"data": str(mnist_zip), **QUICK_MNIST}
    executed = run_notebook("e1_hparam_sweep", **grid_params)
    _, walk = e1_walk(grid_params, lookup)
    assert walk.complete and len(walk.requests) == 2 + 2 * 2
    keys = recorded_keys()
    assert set(keys) == {r.key for r in walk.requests} and set(keys.values()) == {1}  # one measurement per point
    text = notebook_text(executed)
    assert "the fast engine on `cpu`" in text and "fp32 arithmetic" in text and "not compiled" in text
    assert "**E1.1:** no time budget: every one of the 2 settings trained 1 epoch" in text
    assert "one value (lr 0.01) was trained" in text and "one value (`onecycle`) was trained" in text
    assert "**E1.4:** 2 of the grid's best settings re-run with more seeds" in text and "over 3 seeds" in text
    assert reads_well(executed) == TABLES and notebook_images(executed) == 2  # the heatmap and the seeds
    runs = load_runs(MNIST_SECTION)
    assert len(runs) == 1 and runs.iloc[0]["model_class"] == "SmallCNN" and runs.iloc[0]["best_seeds"] == 3
    (line,) = section_headlines(MNIST_SECTION, runs)
    assert line.complete and line.text.startswith(f"SmallCNN: best {runs.iloc[0]['best_setting']}")
    assert "±" in line.text and "no budget" in line.text and line.spread == runs.iloc[0]["best_std"]

    # the same grid again: everything is recorded, nothing is trained
    before = recorded_keys()
    executed = run_notebook("e1_hparam_sweep", **grid_params)
    assert recorded_keys() == before and "Reused, not measured again" in notebook_text(executed)

    # MNIST with a budget over 3 epochs: every setting's first epoch, then the better one goes on from its checkpoint;
    # or, when the first epoch shows the whole grid fits (a fast machine), the other setting whole at once
    # (how far it gets depends on this machine's speed; what holds whatever the speed is asserted)
    budget_params = {**grid_params, "epochs": 3, "budget_s": 60.0, "top": 1, "seeds": 1}
    executed = run_notebook("e1_hparam_sweep", **budget_params)
    _, walk = e1_walk(budget_params, lookup)
    assert walk.complete and walk.halving != walk.whole and walk.rungs[0].trained == 2
    added = recorded_keys() - before
    assert set(added) == {r.key for r in walk.requests} and set(added.values()) == {1}
    continued = [r for r in walk.requests if r.settings.get("continue_from")]
    assert continued and all(lookup(r).results["resumed_from_epoch"] == r.settings["continue_from"] for r in continued)
    kept = {path.parent.name for path in (store_root() / "training").glob(f"*/{CHECKPOINT}")}
    assert kept == {f.measured.run_id for f in walk.fates if f.outcome == STOPPED}  # only what may go on later
    spent = [lookup(r).results["wall_s"] for r in walk.requests]
    assert sum(spent) - spent[-1] <= 60.0  # each point started only while it fit
    text = notebook_text(executed)
    assert "**E1.1:** a budget of 60 s" in text
    if walk.whole:
        assert "the whole grid fits it, so every one of the 2 settings trained its 3 epochs" in text
        assert [r.settings.get("continue_from", 0) for r in walk.requests[:3]] == [0, 0, 1]  # the first went on
    else:
        assert "every one of the 2 settings trained its first epoch" in text
    assert all(fate_text(fate, walk) in text for fate in walk.fates)

    # CIFAR-10 with a budget too small for more than one training: the first point always trains
    cifar_params = {"data": str(cifar_zip), **QUICK_CIFAR, "budget_s": 1.0}  # ResNet-18 on 2 CPU cores: one point
    before = recorded_keys()
    executed = run_notebook("e1_hparam_sweep", **cifar_params)
    assert sum((recorded_keys() - before).values()) == 1
    _, walk = e1_walk(cifar_params, lookup)
    assert [f.outcome for f in walk.fates] == [FINISHED, NOT_TRAINED] and walk.reruns_skipped == 2
    text = notebook_text(executed)
    assert "only 1 of the 2 settings trained their first epoch" in text and "not trained: the budget was spent" in text
    runs = load_runs(CIFAR_SECTION)
    assert len(runs) == 1 and runs.iloc[0]["model_class"] == "ResNet" and runs.iloc[0]["settings_trained"] == 1
    assert "augmented there for colour images" in text
