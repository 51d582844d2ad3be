"""torch.compile's compilations, counted and timed from torch's own compile events; its caches and its state.

    with count_compiles() as log:           # every compilation torch starts and ends inside the block
        ...                                 # train (log.mark(epoch) says which epoch is running)
    log.compiles, log.recompiles, log.compile_s, log.frame()

TorchDynamo announces each compilation through its callback handler (torch._dynamo.callback): one
start and one end per compilation, with what triggered it and its compile id ("frame/attempt"):

- DYNAMO: a Python frame traced and compiled (the forward graph, and for training the backward graph
  AOTAutograd derives from it); a compile id "0/1" is frame 0's second compilation, a *recompile*
  (a guard failed: a new input shape, dtype or module state);
- LAZY_BACKWARD: a backward graph compiled at its first use (Inductor may defer it to the backward);
- CUDAGRAPH_RECORDING: `reduce-overhead` (and `max-autotune` on CUDA) recording CUDA graphs.

So the compile time is the sum of the DYNAMO and LAZY_BACKWARD spans, wherever they happen (a second
compile at the end of epoch 1 included), and the CUDA graph recording is counted beside it. The
counts are what torch reports, not what the step times suggest. A torch without the callback handler
gives `counted` False and NaN seconds (torch >= 2.11 has it).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from lablib.core.timing import now

DYNAMO = "DYNAMO"  # a frame compiled: forward (+ its backward, unless deferred)
LAZY_BACKWARD = "LAZY_BACKWARD"  # a backward compiled at its first use
CUDAGRAPH_RECORDING = "CUDAGRAPH_RECORDING"  # CUDA graphs recorded (not a compile, a one-time cost)
COMPILING = (DYNAMO, LAZY_BACKWARD)  # the triggers whose spans are compile time
_COMPILE_ID = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class CompileEvent:
    """One compilation as torch announced it."""

    trigger: str  # DYNAMO | LAZY_BACKWARD | CUDAGRAPH_RECORDING | another trigger torch adds
    compile_id: str  # "frame/attempt", e.g. "0/0"; "0/1" is a recompile of frame 0
    epoch: int | None  # the epoch running when it started (CompileLog.mark), None before the first
    started_s: float  # seconds since the log began
    seconds: float  # from the start event to the end event

    @property
    def attempt(self) -> int:
        """Which compilation of its frame this is (0 the first, 1 the first recompile); 0 when unknown."""
        found = _COMPILE_ID.search(self.compile_id)
        return int(found.group(2)) if found else 0

    def to_dict(self) -> dict:
        return {**asdict(self), "attempt": self.attempt}


@dataclass
class CompileLog:
    """The compilations inside a `count_compiles()` block (read it after the block)."""

    counted: bool = True  # False: this torch has no compile callbacks, nothing could be counted
    events: list[CompileEvent] = field(default_factory=list)
    epoch: int | None = None
    _origin: float = field(default_factory=now, repr=False)
    _open: dict[str, tuple[str, float, int | None]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def mark(self, epoch: int) -> None:
        """The epoch that runs from now on (a compile's event says in which epoch it happened)."""
        self.epoch = epoch

    def _start(self, args=None) -> None:
        trigger, compile_id = _describe(args)
        with self._lock:
            self._open[compile_id + trigger] = (trigger, now(), self.epoch)

    def _end(self, args=None) -> None:
        trigger, compile_id = _describe(args)
        ended = now()
        with self._lock:
            opened = self._open.pop(compile_id + trigger, None)
            if opened is None:  # an end without its start (a torch that passes no args): pair with any open one
                opened = self._open.pop(next(iter(self._open)), None) if self._open else None
            if opened is None:
                return
            trigger, started, epoch = opened
            self.events.append(CompileEvent(trigger, compile_id, epoch, started - self._origin, ended - started))

    def _of(self, *triggers: str) -> list[CompileEvent]:
        return [event for event in self.events if event.trigger in triggers]

    @property
    def compiles(self) -> int:
        """Frames compiled (DYNAMO events): 1 for one model compiled once for one input shape."""
        return len(self._of(DYNAMO))

    @property
    def recompiles(self) -> int:
        """Compilations of a frame already compiled (a guard failed: e.g. a last batch of another size)."""
        return sum(1 for event in self._of(DYNAMO) if event.attempt > 0)

    @property
    def backward_compiles(self) -> int:
        return len(self._of(LAZY_BACKWARD))

    @property
    def cudagraph_recordings(self) -> int:
        return len(self._of(CUDAGRAPH_RECORDING))

    @property
    def compile_s(self) -> float:
        """Seconds spent compiling (DYNAMO and LAZY_BACKWARD spans), every compilation included."""
        return sum(event.seconds for event in self._of(*COMPILING)) if self.counted else float("nan")

    @property
    def cudagraph_s(self) -> float:
        """Seconds spent recording CUDA graphs."""
        return sum(event.seconds for event in self._of(CUDAGRAPH_RECORDING)) if self.counted else float("nan")

    def results(self) -> dict:
        """The counts and seconds, named as a measurement's results."""
        return {
            "compile_s": self.compile_s,
            "compiles": self.compiles if self.counted else None,
            "recompiles": self.recompiles if self.counted else None,
            "backward_compiles": self.backward_compiles if self.counted else None,
            "cudagraph_recordings": self.cudagraph_recordings if self.counted else None,
            "cudagraph_s": self.cudagraph_s,
            "compile_counted": self.counted,
        }

    def frame(self):
        """One row per event: trigger, compile_id, attempt, epoch, started_s, seconds."""
        import pandas as pd

        columns = ["trigger", "compile_id", "attempt", "epoch", "started_s", "seconds"]
        return pd.DataFrame([event.to_dict() for event in self.events], columns=columns)


def _describe(args) -> tuple[str, str]:
    """(trigger name, compile id) of a callback's argument (torch.compile's CallbackArgs)."""
    trigger = getattr(args, "callback_trigger", None)
    name = getattr(trigger, "name", None) or (str(trigger) if trigger is not None else "UNKNOWN")
    return name, str(getattr(args, "compile_id", "") or "")


def _handler():
    """torch._dynamo's compile callback handler, or None on a torch without one."""
    try:
        from torch._dynamo.callback import callback_handler
    except ImportError:
        return None
    wanted = ("register_start_callback", "register_end_callback", "remove_start_callback", "remove_end_callback")
    return callback_handler if all(hasattr(callback_handler, name) for name in wanted) else None


@contextlib.contextmanager
def count_compiles() -> Iterator[CompileLog]:
    """Every compilation torch announces while the block runs, with its trigger, epoch and seconds."""
    handler = _handler()
    log = CompileLog(counted=handler is not None)
    if handler is None:
        yield log
        return
    handler.register_start_callback(log._start)
    handler.register_end_callback(log._end)
    try:
        yield log
    finally:
        handler.remove_start_callback(log._start)
        handler.remove_end_callback(log._end)


def compile_caches(cold: bool):
    """A context in which Inductor's on-disk caches are off (`cold`), or left as they are.

    Inductor caches compiled graphs on disk (FX graph and AOTAutograd caches), so compiling the same
    model a second time is much faster; a cold compile is what a first run on a fresh machine pays.
    """
    if not cold:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(force_disable_caches=True)


def fresh_compiler() -> None:
    """Forget every frame TorchDynamo compiled in this process, so the next compile starts from nothing.

    A notebook measures several compile modes in one process: without this, the second mode's model
    would be a recompile of the first's frames (and count against Dynamo's recompile limit).
    """
    import torch

    torch._dynamo.reset()
