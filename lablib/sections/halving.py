"""A grid of settings trained within a time budget (successive halving), then its best settings with more seeds.

    walk = halving_walk(size, request_for, recorded, epochs=5, budget_s=600, top=3, seeds=2)
    walk.requests     the measurements in order, as far as the records allow to know them
    walk.complete     False while a listed one is not recorded (walk.waiting says why more will follow)
    walk.fates        per setting: the epochs it trained and why it stopped there
    walk.rungs        the rungs as they ran; walk.reruns: the re-runs of the best settings

Without a budget (budget_s 0) every setting trains its `epochs`, then the `top` best by test accuracy
train again with seeds 1 .. `seeds` (E1.4). With one, the grid fits the time instead of the time
fitting the grid (Jamieson and Talwalkar 2016; Li et al. 2018, Hyperband):

- rung 0: every setting trains its first epoch, in grid order, each started only while the budget
  allows it (the very first always: there is nothing to estimate its time from before it). When the
  first setting's epoch shows that the whole grid fits (every setting all its epochs, the re-runs
  too), the others train all their epochs at once instead (`Walk.whole`: one measurement each, no
  checkpoint to continue from), and the first goes on from its checkpoint; a setting whose first
  epoch is already recorded (a smaller budget's build) goes on from it as well;
- after each rung the settings are ranked by test accuracy (a diverged one stops at once and never
  goes on); the best part continues to the next rung from its checkpoint (lablib.core.training's
  `continue_from`: it never starts over), up to the full `epochs`. The rungs are re-planned at every
  rung's end from the measured times: every setting straight to the end when that fits what is left
  (a budget large enough trains the whole grid), else the smallest η >= ETA_MIN whose remaining rungs
  fit (rung j after this one: the best 1/η^j of the settings, at least one, to e·η^j epochs, the last
  to `epochs`), else the best setting alone as far as the budget allows;
- the re-runs are set aside first, at their estimated cost, when that is at most RERUN_SHARE of what
  is left after rung 0; otherwise they are trained only as far as time is left.

Times come from the records alone: a measurement's `wall_s` (everything it did: data to the device,
warm-up, its epochs, the test, the checkpoint), `epoch_s_mean` and `compile_s`; a point is estimated as
its epochs times the mean epoch time plus the mean overhead of a measurement, compiles left out (the
walk runs in one process, where a further setting compiles nothing). Everything recorded for the walk
counts as spent, whoever measured it, so the walk is a pure function of the records: asked again, it
plans the same. A setting whose checkpoint can no longer continue (it was not chosen; or, while its rung
runs and the estimate says not every setting can go on, at least max(1, n // ETA_MIN) of the n settings
that entered the rung rank above it) is named in the next request's `drop_checkpoints`, so at most about
half of a tight rung's checkpoints are on disk at once; every setting going on is then no longer offered.
A setting stopped by the budget keeps its checkpoint: a later execution with a larger budget
continues it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lablib.core.store import Measured, Request
from lablib.sections.headlines import number

ETA_MIN = 2  # halving: at most half of a rung's settings go on (this also bounds the checkpoints kept at once)
RERUN_SHARE = 0.5  # the re-runs are set aside when they take at most half of what is left after rung 0

FINISHED, PRUNED, DIVERGED, STOPPED, NOT_TRAINED, PENDING = (
    "finished",
    "pruned",
    "diverged",
    "stopped",
    "not trained",
    "pending",
)

# (setting's index in the grid, seed, stop_after or None for the whole training, continue_from, checkpoints
# to drop) -> the training request
RequestFor = Callable[[int, int, int | None, int, Sequence[str]], Request]
Recorded = Callable[[Request], Measured | None]


@dataclass(frozen=True)
class Fate:
    """One setting of the grid: how far it trained and why it stopped there."""

    index: int  # its place in the grid
    outcome: str = PENDING  # FINISHED | PRUNED | DIVERGED | STOPPED (budget spent) | NOT_TRAINED | PENDING
    epochs: int = 0  # epochs trained
    rung: int = -1  # the last rung it trained in (-1: none)
    rank: int = 0  # its rank by test accuracy after that rung (1 = best; 0: not ranked)
    ranked: int = 0  # how many settings were ranked with it
    measured: Measured | None = None  # its last measurement
    key: str = ""  # that measurement's key
    first: Measured | None = None  # its rung-0 measurement (the epochs every setting trained)

    @property
    def accuracy(self) -> float | None:
        return None if self.measured is None else number(self.measured.results.get("test_accuracy"))


@dataclass(frozen=True)
class Rung:
    number: int  # 0, 1, ...
    epochs: int  # the epochs its settings reach
    entered: int  # settings chosen for it
    trained: int  # of them, trained (the budget may end a rung early)
    continued: int = 0  # of them, how many go on to the next rung
    eta: int | None = None  # the η the rung was planned with (None: rung 0, or the best alone)


@dataclass(frozen=True)
class Rerun:
    index: int  # the setting's place in the grid
    seed: int
    request: Request
    measured: Measured | None


@dataclass(frozen=True)
class Walk:
    requests: tuple[Request, ...]
    complete: bool
    waiting: str
    fates: tuple[Fate, ...]
    rungs: tuple[Rung, ...]
    reruns: tuple[Rerun, ...]
    chosen: tuple[int, ...]  # the settings re-run with more seeds (grid indices, best first)
    epochs: int  # the full training's epochs
    budget_s: float  # 0: no budget
    spent_s: float  # what the recorded measurements of the walk took
    reserve_s: float = 0.0  # set aside for the re-runs after rung 0
    reruns_skipped: int = 0  # re-runs the budget did not allow
    top: int = 3
    seeds: int = 2
    whole: bool = False  # the first epoch showed that the whole grid fits: rung 0 trained the others whole

    @property
    def halving(self) -> bool:
        """Whether settings were compared after their first epoch (rung 0) to choose which go on."""
        return self.budget_s > 0 and self.epochs > 1 and not self.whole


@dataclass
class _Clock:
    """What the walk has spent and what it expects the next point to take, from the records so far."""

    epoch_s: list[float] = field(default_factory=list)
    overhead_s: list[float] = field(default_factory=list)
    spent_s: float = 0.0

    def add(self, measured: Measured, epochs: int) -> None:
        """A recorded measurement that trained `epochs` epochs itself. Its compile counts as spent but not in
        the overhead that later measurements are expected to have: the walk's next measurements run in the same
        process (one walking job), where the same step compiles nothing again."""
        results = measured.results
        per_epoch, wall = number(results.get("epoch_s_mean")), number(results.get("wall_s"))
        own = epochs * per_epoch if per_epoch is not None else 0.0
        if per_epoch is not None:
            self.epoch_s.append(per_epoch)
        if wall is not None:
            self.overhead_s.append(max(0.0, wall - own - (number(results.get("compile_s")) or 0.0)))
        self.spent_s += wall if wall is not None else own

    @property
    def per_epoch(self) -> float | None:
        """The mean epoch's seconds so far; None before anything is recorded."""
        return sum(self.epoch_s) / len(self.epoch_s) if self.epoch_s else None

    @property
    def overhead(self) -> float:
        """The mean seconds of a measurement beyond its epochs (data to the device, warm-up, test, checkpoint)."""
        return sum(self.overhead_s) / len(self.overhead_s) if self.overhead_s else 0.0

    def cost(self, epochs: int) -> float | None:
        """The estimated seconds of a measurement training `epochs` epochs; None before anything is recorded."""
        per_epoch = self.per_epoch
        return None if per_epoch is None else epochs * per_epoch + self.overhead

    def fits(self, epochs: int, limit_s: float) -> bool:
        cost = self.cost(epochs)
        return cost is None or self.spent_s + cost <= limit_s


def ranking(fates: Sequence[Fate]) -> list[Fate]:
    """Best first by test accuracy (a missing one, as in a dry run's prediction, last), then grid order."""
    return sorted(fates, key=lambda f: (-(f.accuracy if f.accuracy is not None else -math.inf), f.index))


def diverged(measured: Measured) -> bool:
    return bool(measured.results.get("diverged"))


def rung_schedule(count: int, epochs_now: int, epochs: int, eta: int) -> list[tuple[int, int]]:
    """The rungs after one at `epochs_now` epochs with `count` settings, (epochs, settings) each: rung j reaches
    epochs_now·η^j epochs with count // η^j settings (at least one), the last one all `epochs`. A rung just short
    of `epochs` (its step to the end shorter than the step before it) is left out, and so is a rung after which
    nobody is pruned (the next keeps as many): each rung costs every setting in it one measurement."""
    reaches, reach = [], epochs_now * eta
    while reach < epochs:
        reaches.append(reach)
        reach *= eta
    if reaches and epochs - reaches[-1] < reaches[-1] - (reaches[-2] if len(reaches) > 1 else epochs_now):
        reaches.pop()
    reaches.append(epochs)
    rungs = [(reach, max(1, count // eta**step)) for step, reach in enumerate(reaches, 1)]
    return [rung for rung, after in zip(rungs, [*rungs[1:], None]) if after is None or after[1] < rung[1]]


def schedule_cost(rungs: Sequence[tuple[int, int]], epochs_now: int, epoch_s: float, overhead_s: float) -> float:
    """Seconds of the rungs: each setting of a rung is one measurement training its epochs since the last rung."""
    total, before = 0.0, epochs_now
    for reach, settings in rungs:
        total += settings * ((reach - before) * epoch_s + overhead_s)
        before = reach
    return total


def next_rung(
    count: int, epochs_now: int, epochs: int, clock: _Clock, left_s: float, everyone: bool = True
) -> tuple[int, int, int | None]:
    """(epochs, settings, η) of the next rung for `count` ranked settings at `epochs_now`, or (0, 0, None) when
    the budget allows no more: all of them to the end when that fits `left_s` (and `everyone` may: none of their
    checkpoints was dropped; η 1), else the smallest η >= ETA_MIN whose rungs fit, else the best alone as far
    as it fits."""
    epoch_s, overhead_s = clock.per_epoch or 0.0, clock.overhead
    if everyone and count * ((epochs - epochs_now) * epoch_s + overhead_s) <= left_s:
        return epochs, count, 1
    for eta in range(ETA_MIN, max(ETA_MIN, count) + 1):
        rungs = rung_schedule(count, epochs_now, epochs, eta)
        if epoch_s <= 0 or schedule_cost(rungs, epochs_now, epoch_s, overhead_s) <= left_s:
            reach, settings = rungs[0]
            return reach, settings, eta
    more = math.floor((left_s - overhead_s) / epoch_s)
    if more >= 1:
        return min(epochs, epochs_now + more), 1, None
    return 0, 0, None


class _Pending(Exception):
    """The walk reached a request that is not recorded: it stops there."""


class _Walker:
    def __init__(self, size, request_for, recorded, epochs, budget_s, top, seeds):
        self.size, self.request_for, self.recorded = size, request_for, recorded
        self.epochs, self.budget_s, self.top, self.seeds = epochs, float(budget_s), top, seeds
        self.fates = [Fate(index) for index in range(size)]
        self.requests: list[Request] = []
        self.rungs: list[Rung] = []
        self.reruns: list[Rerun] = []
        self.chosen: tuple[int, ...] = ()
        self.clock = _Clock()
        self.reserve_s = 0.0
        self.skipped = 0
        self.drop: set[str] = set()  # checkpoints no setting will continue from
        self.waiting = ""
        self.whole = False  # decided after the first setting's first epoch

    # --- asking for one measurement ---------------------------------------------------------------

    def obtain(self, index: int, seed: int, stop: int | None, after: int, own: int) -> tuple[Request, Measured]:
        """The recorded measurement of this point, listed; _Pending when it is not recorded yet (then the
        listed request names the checkpoints no setting will continue from)."""
        request = self.request_for(index, seed, stop, after, ())
        found = self.recorded(request)
        if found is None:
            self.requests.append(self.request_for(index, seed, stop, after, sorted(self.drop)))
            raise _Pending
        self.requests.append(request)
        self.clock.add(found, own)
        return request, found

    # --- the walk ---------------------------------------------------------------------------------

    def run(self) -> Walk:
        try:
            if self.budget_s > 0:
                self.rung_zero()
                self.halve()
            else:
                self.whole_grid()
            self.rerun_best()
            complete = True
        except _Pending:
            complete = False
        return Walk(
            tuple(self.requests),
            complete,
            "" if complete else self.waiting,
            tuple(self.fates),
            tuple(self.rungs),
            tuple(self.reruns),
            self.chosen,
            self.epochs,
            self.budget_s,
            self.clock.spent_s,
            self.reserve_s,
            self.skipped,
            self.top,
            self.seeds,
            self.whole,
        )

    def whole_grid(self) -> None:
        """No budget: every setting trains its epochs, listed at once."""
        self.waiting = "the re-runs of the best settings are listed once the whole grid is recorded"
        requests = [self.request_for(index, 0, None, 0, ()) for index in range(self.size)]
        found = [self.recorded(request) for request in requests]
        self.requests.extend(requests)
        for index, (request, measured) in enumerate(zip(requests, found)):
            if measured is not None:
                self.clock.add(measured, self.epochs)
                self.settle(index, request, measured, 0, self.epochs)
        self.rungs.append(Rung(0, self.epochs, self.size, sum(m is not None for m in found)))
        if any(measured is None for measured in found):
            raise _Pending

    def settle(self, index: int, request: Request, measured: Measured, rung: int, reach: int) -> None:
        """A setting's measurement at `rung` (`reach` epochs) is recorded: diverged, finished, or going on."""
        fate = replace(self.fates[index], measured=measured, key=request.key, rung=rung, epochs=reach, rank=0, ranked=0)
        if rung == 0:
            fate = replace(fate, first=measured)
        if diverged(measured):
            fate = replace(fate, outcome=DIVERGED, epochs=int(measured.results.get("epochs_run") or reach))
        elif reach >= self.epochs:
            fate = replace(fate, outcome=FINISHED)
        self.fates[index] = fate

    def rung_zero(self) -> None:
        """Every setting's first epoch, while the budget allows; or, once the first shows that the whole grid
        fits, every other setting's whole training (one not recorded yet) at once."""
        self.waiting = "successive halving lists its next training once this one is recorded"
        stop = 1 if self.epochs > 1 else None
        trained: list[int] = []
        self.rungs.append(Rung(0, 1, self.size, 0))
        for index in range(self.size):
            whole = self.whole and self.recorded(self.request_for(index, 0, stop, 0, ())) is None
            reach = self.epochs if whole else 1
            if trained and not self.clock.fits(reach, self.budget_s):
                for rest in range(index, self.size):
                    self.fates[rest] = replace(self.fates[rest], outcome=NOT_TRAINED)
                break
            request, measured = self.obtain(index, 0, None if whole else stop, 0, reach)
            trained.append(index)
            self.rungs[0] = replace(self.rungs[0], trained=len(trained))
            self.settle(index, request, measured, 0, reach)
            if index == 0 and stop is not None:
                self.whole = self.whole_fits()
            if not self.whole:
                self.release(trained, self.size, 1, 1)
        self.reserve_s = self.rerun_reserve(trained)

    def whole_fits(self) -> bool:
        """After the first setting's first epoch: could every other setting train all its epochs, the first go
        on to the end and the re-runs follow, within the budget, by the estimate now?"""
        whole, rest = self.clock.cost(self.epochs), self.clock.cost(self.epochs - 1)
        if whole is None or rest is None:
            return False
        going_on = rest if self.fates[0].outcome == PENDING else 0.0
        reruns = min(self.top, self.size) * self.seeds * whole
        return self.clock.spent_s + (self.size - 1) * whole + going_on + reruns <= self.budget_s

    def rerun_reserve(self, trained: Sequence[int]) -> float:
        """Seconds set aside for the re-runs: their estimated cost when at most RERUN_SHARE of what is left."""
        live = [i for i in trained if self.fates[i].outcome != DIVERGED]
        cost = self.clock.cost(self.epochs)
        if cost is None or not live:
            return 0.0
        reserve = min(self.top, len(live)) * self.seeds * cost
        return reserve if reserve <= RERUN_SHARE * (self.budget_s - self.clock.spent_s) else 0.0

    def alive(self, rung: int) -> list[Fate]:
        return [f for f in self.fates if f.rung == rung and f.outcome == PENDING]

    def everyone_fits(self, entered: int, trained: int, reach: int, step: int) -> bool:
        """By the estimate now, could every setting of this rung (`entered`, `trained` of them so far, each
        training `step` epochs to `reach`) still go on to the end within the budget?"""
        per_epoch, overhead = self.clock.per_epoch or 0.0, self.clock.overhead
        rest_of_rung = (entered - trained) * (step * per_epoch + overhead)
        to_the_end = entered * ((self.epochs - reach) * per_epoch + overhead)
        return self.clock.spent_s + rest_of_rung + to_the_end <= self.budget_s - self.reserve_s

    def release(self, trained: Sequence[int], entered: int, reach: int, step: int) -> None:
        """Checkpoints of this rung's settings that can no longer go on: not everyone can, and enough others
        already rank above them."""
        if reach >= self.epochs or self.everyone_fits(entered, len(trained), reach, step):
            return
        bound = max(1, entered // ETA_MIN)
        ranked = ranking([self.fates[i] for i in trained if self.fates[i].outcome == PENDING])
        self.drop.update(f.key for f in ranked[bound:])

    def halve(self) -> None:
        """The rungs after rung 0: the best part goes on, re-planned at each rung's end."""
        if any(f.outcome == NOT_TRAINED for f in self.fates):
            self.stop_all()
            return
        rung, reach = 0, 1 if self.epochs > 1 else self.epochs
        limit = self.budget_s - self.reserve_s
        while True:
            live = ranking(self.alive(rung))
            for place, fate in enumerate(live, 1):
                self.fates[fate.index] = replace(fate, rank=place, ranked=len(live))
            if not live:
                return
            everyone = not any(f.key in self.drop for f in live)
            left = limit - self.clock.spent_s
            target, count, eta = next_rung(len(live), reach, self.epochs, self.clock, left, everyone)
            if count == 0:
                self.stop_all()
                return
            chosen, dropped = live[:count], live[count:]
            for fate in dropped:
                self.fates[fate.index] = replace(self.fates[fate.index], outcome=PRUNED)
            self.drop.update(f.key for f in dropped)
            self.rungs[-1] = replace(self.rungs[-1], continued=len(chosen))
            self.rungs.append(Rung(rung + 1, target, len(chosen), 0, eta=eta))
            trained = []
            for fate in chosen:
                if trained and not self.clock.fits(target - reach, limit):
                    break
                stop = None if target >= self.epochs else target
                request, measured = self.obtain(fate.index, 0, stop, reach, target - reach)
                trained.append(fate.index)
                self.rungs[-1] = replace(self.rungs[-1], trained=len(trained))
                self.settle(fate.index, request, measured, rung + 1, target)
                self.release(trained, len(chosen), target, target - reach)
            rung, reach = rung + 1, target
            if len(trained) < len(chosen):  # the budget ended the rung: the rest stop where they are
                self.stop_all()
                return

    def stop_all(self) -> None:
        """The settings still going on stop where they are: the budget is spent (their checkpoints stay)."""
        for fate in self.fates:
            if fate.outcome == PENDING and fate.rung >= 0:
                self.fates[fate.index] = replace(fate, outcome=STOPPED)

    def rerun_best(self) -> None:
        """E1.4: the `top` best finished settings again with seeds 1 .. `seeds`, the best first."""
        self.waiting = "the next re-run of the best settings is listed once this one is recorded"
        finished = ranking([f for f in self.fates if f.outcome == FINISHED])
        self.chosen = tuple(f.index for f in finished[: self.top])
        planned = [(index, seed) for index in self.chosen for seed in range(1, self.seeds + 1)]
        if self.budget_s <= 0:
            requests = [self.request_for(index, seed, None, 0, ()) for index, seed in planned]
            found = [self.recorded(request) for request in requests]
            self.requests.extend(requests)
            self.reruns = [Rerun(i, s, r, m) for (i, s), r, m in zip(planned, requests, found)]
            if any(measured is None for measured in found):
                raise _Pending
            return
        for number_done, (index, seed) in enumerate(planned):
            if not self.clock.fits(self.epochs, self.budget_s):
                self.skipped = len(planned) - number_done
                return
            try:
                request, measured = self.obtain(index, seed, None, 0, self.epochs)
            except _Pending:
                self.reruns.append(Rerun(index, seed, self.requests[-1], None))
                raise
            self.reruns.append(Rerun(index, seed, request, measured))


def halving_walk(
    size: int,
    request_for: RequestFor,
    recorded: Recorded,
    epochs: int,
    budget_s: float = 0.0,
    top: int = 3,
    seeds: int = 2,
) -> Walk:
    """The grid of `size` settings as far as the records allow to know it (see the module docstring)."""
    return _Walker(size, request_for, recorded, int(epochs), float(budget_s), int(top), int(seeds)).run()
