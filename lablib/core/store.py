"""The measurement store: every number is measured once, under a key of what decides it, and reused.

    request = training_request(config)          # lablib.core.training: what to measure
    measured = obtain(request)                  # the recorded measurement, else measured now and recorded
    measured.epochs, measured.results, measured.artifact("weights.pt"), measured.reused

A Request names a kind of measurement (a function registered in KINDS) and its settings. Its key
hashes what decides the result: the kind, the settings (the data source replaced by its content
fingerprint, a model taken from another measurement by that measurement's key), the code of the
core layer (the measuring code), the locked environment and the device kind ("cuda:<GPU>" or
"cpu:<CPU model>"). Nothing else: the section asking, the profile, the time of day, the presenting
code and the report's words are outside it, so two sections that ask for the same training get one.

    runs/measurements/<kind>/<key>-<UTC time>-<random>/
        run.json      the request, its key and key parts, status (running -> complete | failed | ...),
                      provenance, the process recording it, whether it ran alone on the machine
        epochs.json, results.json, *.csv, artifacts (weights.pt, trace.json, ...)

A measurement is complete only in its last write (lablib.core.runs.Run), so a killed one is never
reused; its process gone, it reads as abandoned and is measured again. One process measures a key
at a time (a lock file per key), so two notebooks or jobs asking at once measure it once.

Timing requests (`timing=True`: the seconds are the answer) reuse only a measurement that ran alone
on the machine: a job that shared it (JOBS > 1) records `alone: false` (LABLIB_SHARED=1).

With LABLIB_MEASURE=reuse (the report's presenting step), a request that is not recorded is a
NotMeasured error naming it and why, never a measurement inside a notebook that presents.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT, runs_root
from lablib.core.runs import (
    Run,
    _read_json,
    effective_status,
    shared_mode,
)

MEASUREMENTS = "measurements"  # runs/measurements/<kind>/<key>-.../
MODE_ENV = "LABLIB_MEASURE"  # "reuse": a request that is not recorded is an error (the report's presenting step)
SHARED_ENV = "LABLIB_SHARED"  # "1": this process shares the machine with other jobs (JOBS > 1)
SECTION_ENV = "LABLIB_SECTION"  # the section asking (recorded as who asked first), set by the report's jobs
# Settings that do not decide the result: where the data lives, whether a training keeps its weights, which
# checkpoint a training continues from and which ones it may delete (lablib.core.training: a continued
# training gives the epochs of one trained straight through), where a C++ program is built.
NOT_IN_KEY = ("data_dir", "download", "save_weights", "continue_from", "drop_checkpoints", "build_dir")

# kind -> the core module whose `measure_<kind>(request, record)` measures it
KINDS = {
    "training": "lablib.core.training",
    "counts": "lablib.core.counts",
    "compiled_training": "lablib.core.compiled",
    "profile": "lablib.core.profiler",
    "torchscript": "lablib.core.torchscript",
    "latency": "lablib.core.latency",
    "libtorch": "lablib.core.libtorch",
    "inference_timing": "lablib.core.inference",
    "layer_profile": "lablib.core.inference",
    "device_busy": "lablib.core.inference",
}


@dataclass(frozen=True)
class Work:
    """What a measurement costs, in the units the dry run prices (lablib.report.estimate): trainings,
    single-image calls, compiles and fixed seconds. Each kind's module says it (`work_<kind>(request)`)
    from the settings alone, before anything runs."""

    model: str = ""  # resnet18 | small_cnn | mobilenet_v2 | "" (no training)
    device: str = "cpu"
    epochs: float = 0.0  # training epochs (a fraction for a few steps)
    images: int = 0  # training images per epoch
    batch: int = 0  # images per training step (0: not known); a GPU's step has a launch floor
    engine: str = "faithful"  # faithful (the lab's DataLoader loop) | fast (data on the device)
    precision: str = "fp32"
    workers: int = 0  # DataLoader workers (faithful engine)
    width: float = 1.0  # MobileNetV2's width multiplier
    compiles: tuple[str, ...] = ()  # torch.compile modes compiled cold (max-autotune costs most)
    calls: int = 0  # single-image forward calls (latency timings)
    fixed_s: float = 0.0  # seconds that scale with nothing above (a C++ build, an AOTInductor compile)


class NotMeasured(LabError):
    """A request that is not recorded, where measuring is not allowed (LABLIB_MEASURE=reuse)."""


class MeasureFailed(LabError):
    """A measurement raised; the message names it and its record."""


@dataclass(frozen=True)
class Request:
    """What to measure. `settings` are JSON values; `data` in them is a source (a path or a name).

    timing: the measurement's seconds are what is asked for (reuse only one that ran alone).
    label: the request in words, for progress lines and the dry run ("training sgd, 4 workers, cuda").
    keep: artifacts the asker needs (e.g. ("weights.pt",)): a record without them is measured again.
    """

    kind: str
    settings: Mapping[str, Any]
    timing: bool = False
    label: str = ""
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LabError(f"unknown measurement kind {self.kind!r}; known: {', '.join(KINDS)}.")

    @property
    def key(self) -> str:
        return measurement_key(key_parts(self))

    def describe(self) -> str:
        return self.label or f"{self.kind} {json.dumps(dict(self.settings), sort_keys=True, default=str)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "settings": dict(self.settings),
            "timing": self.timing,
            "label": self.label,
            "keep": list(self.keep),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        return cls(
            data["kind"],
            dict(data["settings"]),
            bool(data.get("timing")),
            str(data.get("label", "")),
            tuple(data.get("keep", ())),
        )


# --- the key ---------------------------------------------------------------------------------


def code_of(source: bytes) -> bytes:
    """A module's code without what does not run: its comments, docstrings and layout (the source as
    ast.unparse writes it back, docstrings removed), so documenting the core does not re-measure. A file that
    does not parse is taken as it is."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
                if isinstance(first.value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree).encode()


@lru_cache(maxsize=4)
def core_digest(package: Path = REPO_ROOT / "lablib" / "core") -> str:
    """sha256 of every Python file of the core layer (recursively, with its path): the measuring code, its
    comments, docstrings and layout aside (code_of)."""
    digest = hashlib.sha256()
    for module in sorted(package.rglob("*.py")):
        if "__pycache__" in module.parts:
            continue
        code = code_of(module.read_bytes())
        digest.update(module.relative_to(package).as_posix().encode() + b"\0" + code + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=8)
def device_kind(device_type: str) -> str:
    """What a measurement runs on: 'cuda:<GPU name>', 'cpu:<CPU model>' (the device's type alone otherwise)."""
    import torch

    from lablib.core.provenance import cpu_model

    if device_type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cuda:unavailable"
    if device_type == "cpu":
        return f"cpu:{cpu_model()}"
    return device_type


def key_parts(request: Request) -> dict[str, Any]:
    """What the key hashes (recorded in run.json, so a reader can say which part changed)."""
    from lablib.core.data import source_fingerprint
    from lablib.core.provenance import environment_lock

    settings = {k: v for k, v in request.settings.items() if k not in NOT_IN_KEY}
    if "data" in settings:
        settings["data"] = source_fingerprint(str(settings["data"]))
    return {
        "kind": request.kind,
        "settings": json.loads(json.dumps(settings, sort_keys=True, default=str)),
        "core": core_digest(),
        "environment": environment_lock(),
        "device": device_kind(str(request.settings.get("device", "cpu"))),
    }


def measurement_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# --- a recorded measurement ------------------------------------------------------------------


@dataclass
class Measured:
    """A measurement as recorded: its folder and run.json; epochs, results and tables read on demand."""

    request: Request
    path: Path
    meta: dict[str, Any]
    reused: bool  # True: recorded before this request (by this or another section); False: measured for it
    _results: dict[str, Any] | None = field(default=None, repr=False)
    _epochs: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def results(self) -> dict[str, Any]:
        if self._results is None:
            self._results = _read_json(self.path / "results.json", {})
        return self._results

    @property
    def epochs(self) -> list[dict[str, Any]]:
        if self._epochs is None:
            self._epochs = _read_json(self.path / "epochs.json", [])
        return self._epochs

    def table(self, name: str):
        import pandas as pd

        path = self.path / f"{name}.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def artifact(self, name: str) -> Path:
        return self.path / name

    @property
    def first_asked_by(self) -> str:
        return str(self.meta.get("asked_by") or "")

    def use(self) -> dict[str, Any]:
        """What a presenting record keeps of a measurement it shows (lablib.core.runs.Run.uses)."""
        return {
            "kind": self.request.kind,
            "key": self.key,
            "run_id": self.run_id,
            "path": str(self.path),
            "label": self.request.label,
            "reused": self.reused,
            "asked_by": self.first_asked_by,
            "ended": self.meta.get("ended"),
        }


def store_root(root: Path | None = None) -> Path:
    return (root or runs_root()) / MEASUREMENTS


def _attempts(request: Request, key: str, root: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every recorded attempt of `key` (oldest first), with its status as readers see it."""
    found = []
    for meta_path in sorted((store_root(root) / request.kind).glob(f"{key}-*/run.json")):
        meta = _read_json(meta_path, None)
        if meta is not None and meta.get("key") == key:
            meta["status"] = effective_status(meta)
            found.append((meta_path.parent, meta))
    # started is to the second: two attempts in one second are ordered by when their record was last written
    return sorted(found, key=lambda item: (item[1].get("started") or "", (item[0] / "run.json").stat().st_mtime_ns))


def _usable(request: Request, folder: Path, meta: Mapping[str, Any]) -> bool:
    if meta.get("status") != "complete":
        return False
    if request.timing and not meta.get("alone", True):
        return False  # a timing never comes from a measurement that shared the machine
    return all((folder / name).exists() for name in request.keep)


def lookup(request: Request, root: Path | None = None) -> Measured | None:
    """The newest usable complete measurement of the request, else None. Nothing is measured."""
    key = request.key
    usable = [(folder, meta) for folder, meta in _attempts(request, key, root) if _usable(request, folder, meta)]
    if not usable:
        return None
    folder, meta = usable[-1]
    return Measured(request, folder, meta, reused=True)


def recorded_key(key: str, root: Path | None = None) -> bool:
    """Whether a complete measurement with this key is recorded (of any kind): a request naming its source
    by key (`settings["source"]`) can be measured once this holds."""
    for meta_path in store_root(root).glob(f"*/{key}-*/run.json"):
        meta = _read_json(meta_path, None)
        if meta and meta.get("key") == key and effective_status(meta) == "complete":
            return True
    return False


def last_failure(request: Request, root: Path | None = None) -> dict[str, Any] | None:
    """The newest attempt of the request when it did not end complete (its status and error), else None."""
    attempts = _attempts(request, request.key, root)
    if attempts and attempts[-1][1].get("status") not in ("complete", "running"):
        return attempts[-1][1]
    return None


@contextlib.contextmanager
def _key_lock(request: Request, key: str, root: Path | None = None) -> Iterator[None]:
    """One process measures a key at a time: flock on <kind>/.<key>.lock (dropped when the process ends)."""
    folder = store_root(root) / request.kind
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / f".{key}.lock", os.O_RDWR | os.O_CREAT, shared_mode())
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


MeasureFunction = Callable[[Request, Run], None]


def measuring_function(kind: str) -> MeasureFunction:
    module = importlib.import_module(KINDS[kind])
    return getattr(module, f"measure_{kind}")


def obtain(request: Request, asked_by: str = "", root: Path | None = None, force: bool = False) -> Measured:
    """The request's measurement: the recorded one when there is one, else measured now and recorded.

    A failed measurement is recorded as failed and raised as MeasureFailed (one line naming it and its
    record; the traceback is in its run.json). With LABLIB_MEASURE=reuse, not recorded is NotMeasured.
    `force` (the report's FORCE=1): measured again, a newer attempt of the same key, even when recorded.
    """
    found = None if force else lookup(request, root)
    if found is not None:
        return found
    if os.environ.get(MODE_ENV) == "reuse":
        failure = last_failure(request, root)
        why = (
            f"its last attempt ended {failure['status']}: {_first_line(failure.get('error'))}"
            if failure
            else "the build did not measure it"
        )
        raise NotMeasured(f"{request.describe()} is not recorded ({why}); run `make report` again to measure it.")
    key = request.key
    with _key_lock(request, key, root):
        found = None if force else lookup(request, root)  # measured by another process while this one waited
        if found is not None:
            return found
        return _measure(request, key, asked_by or os.environ.get(SECTION_ENV, ""), root)


def _measure(request: Request, key: str, asked_by: str, root: Path | None) -> Measured:
    import torch

    folder = store_root(root) / request.kind / f"{key}-{_stamp()}"
    device = request.settings.get("device")
    record = Run(
        request.kind,
        settings=dict(request.settings),
        device=torch.device(device) if device in ("cpu", "cuda") and _device_ok(device) else None,
        folder=folder,
        extra={
            "key": key,
            "key_parts": key_parts(request),
            "request": request.to_dict(),
            "alone": os.environ.get(SHARED_ENV) != "1",
            "asked_by": asked_by,
        },
    )
    try:
        measuring_function(request.kind)(request, record)
    except BaseException as error:
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        record.finish(status, "".join(traceback.format_exception(type(error), error, error.__traceback__))[-4000:])
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(error, LabError):
            raise MeasureFailed(f"{request.describe()}: {error} (record: {folder})") from error
        raise MeasureFailed(
            f"{request.describe()} failed: {type(error).__name__}: {_first_line(str(error))} (record: {folder})"
        ) from error
    record.finish("complete")
    return Measured(request, folder, dict(record.meta), reused=False)


def _stamp() -> str:
    """A fresh '<UTC time>-<random>' suffix: attempts of one key sort by time and never collide."""
    import datetime as dt
    import secrets

    return f"{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _device_ok(device: str) -> bool:
    import torch

    return device == "cpu" or torch.cuda.is_available()


def _first_line(text: Any) -> str:
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error recorded"


def measure_all(requests: list[Request], asked_by: str = "", root: Path | None = None) -> list[Measured | LabError]:
    """Obtain each request in turn; a failure is returned in its place and the next one still runs."""
    done: list[Measured | LabError] = []
    for request in requests:
        try:
            done.append(obtain(request, asked_by, root))
        except (MeasureFailed, NotMeasured) as error:
            done.append(error)
    return done


def read_requests(path: Path) -> list[tuple[Request, str, bool]]:
    """A measuring job's requests file: [{"request": {...}, "asked_by": section, "force": false}, ...]."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LabError(f"cannot read the requests file {path}: {error}") from None
    return [
        (Request.from_dict(entry["request"]), str(entry.get("asked_by", "")), bool(entry.get("force")))
        for entry in entries
    ]


def work(request: Request) -> tuple[Work, ...]:
    """What the request costs (its kind's `work_<kind>`), for the dry run; () when the kind says nothing."""
    module = importlib.import_module(KINDS[request.kind])
    estimate = getattr(module, f"work_{request.kind}", None)
    return tuple(estimate(request)) if estimate is not None else ()
