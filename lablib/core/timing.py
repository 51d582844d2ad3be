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
from collections.abc import Callable, Iterator
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


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, runs: int) -> list[float]:
    """Run `fn` `warmup` times untimed, then `runs` times timed; return each run in seconds.

    Each timed run is synchronised before and after, so on a GPU it measures
    the kernels' completion, not their launch.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        start = now(device)
        fn()
        times.append(now(device) - start)
    return times
