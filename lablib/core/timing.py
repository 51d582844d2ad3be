"""All of the project's clocks: the only module that calls perf_counter or synchronize.

LAB_SPEC "Time measurement":
- data-loading time: time blocked in next() on the DataLoader iterator,
  excluding the copy of the batch to the device;
- training time: device copy + zero_grad + forward + loss + backward + step,
  with torch.cuda.synchronize() before the start and before the end timestamp on
  a GPU, so the time is the GPU's, not the kernel launches';
- total epoch time: wall clock of the whole epoch.
Data and training intervals never overlap and both lie inside the epoch, so
data_s + train_s <= total_s holds by construction (and is tested).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device | None = None) -> float:
    """Seconds on a monotonic clock, after the device's queued work has finished."""
    if device is not None:
        synchronize(device)
    return time.perf_counter()


@dataclass(frozen=True)
class EpochTimes:
    data_s: float  # blocked waiting for batches
    train_s: float  # copy to device + step, synchronised
    total_s: float  # the whole epoch


class EpochTimer:
    """Accumulates one epoch's data-wait and training intervals.

    timer = EpochTimer(device)
    timer.start()
    while (batch := timer.next_batch(iterator)) is not None:
        with timer.training():
            ...  # copy, zero_grad, forward, loss, backward, step
    times = timer.stop()
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._sync = device.type == "cuda"
        self.data_s = 0.0
        self.train_s = 0.0
        self._epoch_start = 0.0
        self._train_start = 0.0

    def start(self) -> None:
        self.data_s = self.train_s = 0.0
        self._epoch_start = now(self.device)

    def next_batch(self, iterator: Iterator[T]) -> T | None:
        """next(iterator), timed as data wait; None at the end of the epoch.

        The wait for the end (worker shutdown included) counts as data time:
        the training loop is blocked on the loader all the same.
        """
        start = time.perf_counter()
        try:
            return next(iterator)
        except StopIteration:
            return None
        finally:
            self.data_s += time.perf_counter() - start

    def training(self) -> EpochTimer:
        return self

    def __enter__(self) -> EpochTimer:
        if self._sync:
            torch.cuda.synchronize(self.device)
        self._train_start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._sync:
            torch.cuda.synchronize(self.device)
        self.train_s += time.perf_counter() - self._train_start

    def stop(self) -> EpochTimes:
        total = now(self.device) - self._epoch_start
        return EpochTimes(self.data_s, self.train_s, total)


class WholeEpochTimer:
    """EpochTimer's interface for an epoch timed only as a whole (fast mode).

    The device is synchronised at the start and at the end of the epoch and
    never in between, so the host can queue steps ahead of the GPU. There is
    no loader to wait for (batches are cut on the device), so data_s is 0 and
    train_s is the whole epoch.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._epoch_start = 0.0

    def start(self) -> None:
        self._epoch_start = now(self.device)

    def next_batch(self, iterator: Iterator[T]) -> T | None:
        return next(iterator, None)

    def training(self) -> contextlib.nullcontext:
        return contextlib.nullcontext()

    def stop(self) -> EpochTimes:
        total = now(self.device) - self._epoch_start
        return EpochTimes(0.0, total, total)


class Stopwatch:
    """Times a block, synchronising the device at both ends.

    with Stopwatch(device) as watch:
        model = torch.compile(model); model(x)
    watch.seconds
    """

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.seconds = float("nan")
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = now(self.device)
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = now(self.device) - self._start


class Intervals:
    """Each pass through a repeated block, in seconds: a per-step clock beside the epoch's totals.

    clock = Intervals()
    with clock.timed():     # e.g. the loop's around_step hook: outside its synchronised training interval
        ...
    clock.seconds           # one value per pass, in order; clock.marks: the label given by mark() for each

    The block's own synchronisation decides what is timed: around the lab's training interval (which
    synchronises the GPU at both ends) it is the step's GPU time; nothing here synchronises.
    """

    def __init__(self):
        self.seconds: list[float] = []
        self.marks: list[object] = []
        self._mark: object = None

    def mark(self, label: object) -> None:
        """The label of the passes from now on (the epoch number)."""
        self._mark = label

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds.append(time.perf_counter() - start)
            self.marks.append(self._mark)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, runs: int) -> list[float]:
    """Run `fn` `warmup` times untimed, then `runs` times timed; return each run in seconds.

    Each timed run is one call of `timeit.Timer(fn).timeit(1)` with torch.utils.benchmark's clock for
    an accelerator (it synchronises the device before reading the time, so a GPU's kernels are timed to
    their completion, not their launch) and perf_counter on the CPU; unlike Timer.timeit, no hidden
    warm-up calls run beside the timed ones.
    """
    import timeit

    clock = time.perf_counter
    if device.type != "cpu":
        import logging

        # torch.utils.benchmark imports cpp_extension, which warns about CUDA_HOME on a machine without CUDA.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        from torch.utils.benchmark.utils.timer import timer as synchronised_clock

        clock = synchronised_clock
    for _ in range(warmup):
        fn()
    synchronize(device)
    timer = timeit.Timer(fn, timer=clock)
    return [float(timer.timeit(1)) for _ in range(runs)]


# --- the one summary of repeated timings ------------------------------------------------------

NOISY_RELATIVE = 0.5  # (p95 - p5) / median above this: something else ran while timing (a busy machine)


@dataclass(frozen=True)
class Summary:
    """Statistics of repeated timings, in seconds: what every table of latencies and repeats shows."""

    runs: int
    mean: float
    median: float
    std: float  # sample standard deviation; 0 for a single run
    p5: float  # percentiles by linear interpolation (with few runs they approach min and max)
    p10: float
    p90: float
    p95: float
    min: float
    max: float

    @property
    def relative_spread(self) -> float:
        """(p95 - p5) / median: about 0.1 on a quiet machine; large when other work interrupted the timing."""
        return (self.p95 - self.p5) / self.median if self.median > 0 else float("inf")

    @property
    def noisy(self) -> bool:
        """The one noise rule: the timings spread too far to compare small differences."""
        return self.runs > 1 and self.relative_spread > NOISY_RELATIVE

    def ms(self) -> dict[str, float]:
        """The statistics in milliseconds, named as the tables show them (mean_ms, median_ms, ..., runs)."""
        names = ("mean", "median", "std", "p5", "p10", "p90", "p95", "min", "max")
        return {"runs": self.runs, **{f"{name}_ms": 1000.0 * getattr(self, name) for name in names}}


def summarize(seconds: Sequence[float]) -> Summary:
    """Summarise repeated timings given in seconds (what time_calls returns)."""
    import numpy as np

    from lablib.core.errors import LabError

    values = np.asarray(list(seconds), dtype=float)
    if values.size == 0:
        raise LabError("no timed runs to summarise; time at least one run.")
    percentile = lambda q: float(np.percentile(values, q))  # noqa: E731
    return Summary(
        runs=int(values.size),
        mean=float(values.mean()),
        median=float(np.median(values)),
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        p5=percentile(5),
        p10=percentile(10),
        p90=percentile(90),
        p95=percentile(95),
        min=float(values.min()),
        max=float(values.max()),
    )
