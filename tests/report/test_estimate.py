"""The dry run's estimates: repeated compiles, a GPU step's launch floor, the fast engine's defaults as
planned on a GPU node, and a time budget shared over E1's grids."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lablib.cli import build_parser
from lablib.core import store
from lablib.core.config import make_config
from lablib.core.training import assume_cuda, training_request
from lablib.report.build import FIT_MARGIN, options_from, share_budget
from lablib.report.estimate import (
    GPU_COMPILE_S,
    JOB_START_S,
    REPEAT_COMPILE_SHARE,
    WALK_MEASUREMENT_S,
    Estimator,
    repeat_share,
    step_floor_s,
)
from lablib.report.plan import PlanError


def _fast(data="cifar10", lr=0.1):
    with assume_cuda():
        return training_request(make_config(data=data, device="auto", epochs=5, lr=lr), engine="fast")


def test_planned_on_a_gpu_node_the_fast_engine_trains_in_bf16_and_compiles_all_but_the_small_cnn():
    resnet, cnn = _fast(), _fast("mnist")
    assert resnet.settings["device"] == "cuda" and resnet.settings["precision"] == "bf16"
    assert resnet.settings["compile"] == "default"
    assert cnn.settings["compile"] == "none"  # a whole MNIST training costs less than its compile


@pytest.mark.parametrize("separate", [False, True])
def test_a_compile_the_plan_made_before_costs_the_caches_share(separate):
    estimator = Estimator(cuda=False, separate=separate)
    first, second = _fast(lr=0.1), _fast(lr=0.01)
    l4 = estimator.gpus[0]
    alone = estimator.seconds(first, l4)
    together = estimator.total([first, second], 0, l4)
    share = REPEAT_COMPILE_SHARE["new process" if separate else "fast step, same process"]
    assert together == pytest.approx(2 * alone - (1 - share) * GPU_COMPILE_S["default"])
    assert share == repeat_share(store.work(second)[0], separate)
    inference = replace(store.work(second)[0], model="", engine="faithful")  # not the fast step: the caches' share
    assert repeat_share(inference, separate) == REPEAT_COMPILE_SHARE["new process" if separate else "same process"]


@pytest.mark.parametrize("separate", [False, True])
def test_a_walk_is_one_job_whose_further_settings_compile_nothing(separate):
    estimator = Estimator(cuda=False, separate=separate)  # JOBS > 1 or Slurm: a walk is still one process
    first, second = _fast(lr=0.1), _fast(lr=0.01)
    l4 = estimator.gpus[0]
    alone = estimator.seconds(first, l4, walk=True)
    assert estimator.total([first], 0, l4, walk=True) == pytest.approx(JOB_START_S + alone)
    together = estimator.total([first, second], 0, l4, walk=True)
    assert together == pytest.approx(JOB_START_S + 2 * alone - GPU_COMPILE_S["default"])  # compiled once
    apart = estimator.total([first, second], 0, l4)  # not a walk: a share of a job's start each
    assert apart - together == pytest.approx(
        2 * (JOB_START_S / 4 - WALK_MEASUREMENT_S)
        - JOB_START_S
        + (REPEAT_COMPILE_SHARE["new process"] * GPU_COMPILE_S["default"] if separate else 0.0)
    )


def test_a_gpu_epoch_takes_at_least_its_steps_launches():
    estimator = Estimator(cuda=False)
    h100 = estimator.gpus[-1]
    (work,) = store.work(_fast("mnist"))
    floor = -(-work.images // work.batch) * step_floor_s(work) * work.epochs
    assert h100.seconds(work) >= floor > 0  # a small CNN: its FLOPs alone would take milliseconds
    eager, compiled = (
        step_floor_s(replace(work, model="resnet18")),
        step_floor_s(replace(work, model="resnet18", compiles=("default",))),
    )
    assert 0 < compiled < eager  # compiled: the convolutions' launches, not every module's
    assert step_floor_s(replace(work, model="mobilenet_v2")) > eager  # more, smaller layers


def test_a_budget_gives_a_grid_that_fits_its_time_and_a_margin_and_the_rest_to_the_others():
    shares = share_budget(1200.0, {"mnist": 240.0, "cifar": 2700.0})
    assert shares == {"mnist": 240.0 * FIT_MARGIN, "cifar": 1200.0 - 240.0 * FIT_MARGIN}
    assert share_budget(1200.0, {"a": 2000.0, "b": 3000.0}) == {"a": 600.0, "b": 600.0}
    assert share_budget(120.0, {"a": 10.0, "b": 30.0}) == {"a": 30.0, "b": 90.0}  # all fit: in proportion
    assert list(share_budget(10.0, {"b": 50.0, "a": 1.0})) == ["b", "a"]  # the plan's order


def _options(budget):
    return options_from(build_parser().parse_args(["report", *(["--budget", budget] if budget is not None else [])]))


@pytest.mark.parametrize(("given", "seconds"), [(None, None), ("", None), ("none", 0.0), ("0", 0.0), ("45m", 2700.0)])
def test_budget_unset_takes_the_profiles_and_none_trains_the_whole_grids(given, seconds):
    assert _options(given).budget_s == seconds


def test_a_budget_that_is_not_a_duration_is_refused_with_its_value():
    with pytest.raises(PlanError, match=r"BUDGET: the time budget 'soon' is not a duration"):
        _options("soon")


def test_a_budgets_split_is_kept_so_a_rebuild_asks_for_the_same_grids(private_run_store, monkeypatch):
    """The split comes from estimates that change once epochs are measured (and with a noisy probe): it is made
    once per budget, grids, data, device kind, code and environment, and a rebuild takes it as made."""
    from conftest import CIFAR_ZIP, MNIST_ZIP, require_data

    from lablib.report import build
    from lablib.report.plan import load_plan

    data = require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
    mnist = require_data(MNIST_ZIP, "MNIST", "LABLIB_TEST_MNIST")
    plan = load_plan(build.DEFAULT_PLAN, "quick")
    grids = frozenset({"e1_hparam_sweep", "e1_cifar10"})
    options = build.Options(profile="quick", data=str(data), mnist=str(mnist), budget_s=120.0)
    estimate = {"e1_hparam_sweep": 20.0, "e1_cifar10": 100.0}
    monkeypatch.setattr(build, "share_budget", lambda budget, costs: dict(estimate))
    said: list[str] = []
    first = build.split_budget(plan, options, grids, said.append)
    estimate = {"e1_hparam_sweep": 60.0, "e1_cifar10": 60.0}
    again = build.split_budget(plan, options, grids, said.append)  # the estimates moved: the split does not
    assert first == again == {"e1_hparam_sweep": 20.0, "e1_cifar10": 100.0}
    assert any("kept so that a rebuild presents the same grids" in line for line in said)
    estimate = {"e1_hparam_sweep": 30.0, "e1_cifar10": 30.0}
    other = build.split_budget(plan, replace(options, budget_s=60.0), grids, said.append)  # another budget
    assert other == {"e1_hparam_sweep": 30.0, "e1_cifar10": 30.0}
    estimate = {"e1_hparam_sweep": 50.0, "e1_cifar10": 70.0}
    forced = build.split_budget(plan, replace(options, force=True), grids, said.append)
    assert forced == {"e1_hparam_sweep": 50.0, "e1_cifar10": 70.0}  # FORCE=1 splits again, and keeps that
    assert build.split_budget(plan, options, grids, said.append) == forced
    assert build.split_budget(plan, replace(options, dry_run=True, budget_s=90.0), grids, said.append)
    assert len(list((private_run_store / build.SPLITS).glob("*.json"))) == 2  # a dry run records nothing
