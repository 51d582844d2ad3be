"""The run store: one folder per run, written atomically, complete only at the end.

runs/<section>/<run-id>/
    run.json       settings, notebook parameters, provenance, status, times
    epochs.json    per-epoch rows (rewritten whole after each epoch)
    results.json   named final results (numbers, short lists)
    *.csv, ...     tables and artifacts (traces, saved models)
    notebook.ipynb the executed notebook, when run through `lablib execute`/`make report`

`status` in run.json is "running" from the start and becomes "complete" (or
"failed") only in the last write, so a killed run never looks finished. Every
file is written to a temporary name and renamed, so readers never see half a
file, and run ids are unique, so two runs at once never share a folder.

run.json records the process that writes it (`pid`, `host`, `pid_started`). A
reader on the same host sees a "running" run whose process is gone as
"abandoned" (`effective_status`); a run on another host (a Slurm node) stays
"running" with its host named, as this host cannot see that node's processes.
A report point's run takes its point's final status when the point did not end
complete (lablib.report.job settles both files), so the two never disagree.

A report point (lablib.report) executes a notebook with $LABLIB_RUN_DIR naming
the point's folder, runs/<section>/<point-id>/. The run that records the point
is the first Run of that section in the kernel ($LABLIB_RUN_SECTION names the
section; by default it is the folder's parent, as the layout above has it): it
claims the folder once, and its run.json says "point_run": true. Runs of other
sections, and any later run of the same section, get folders of their own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import tempfile
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lablib.core.errors import LabError
from lablib.core.paths import runs_root  # noqa: F401  (re-exported: the run store's root)

RUN_DIR_ENV = "LABLIB_RUN_DIR"  # set by the report runner: the point's folder, runs/<section>/<point-id>/
RUN_SECTION_ENV = "LABLIB_RUN_SECTION"  # optional: the point's section (default: the folder's parent's name)
POINT_OWNER_ENV = "LABLIB_POINT_OWNER"  # "<pid>:<start ticks>" of the process that records the point (the build)
MIN_FREE_BYTES = 100 * 2**20  # the least free space a build starts with (records, notebooks, a data cache)
LOCK_FILE = ".build.lock"
IGNORED_IN_GROUP = ("data_dir", "download")  # settings that do not change what is measured


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN/inf become None, numpy and paths become Python values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item())  # numpy / torch scalars
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def shared_mode(mode: int = 0o666) -> int:
    """`mode` less the user's umask: what open() would give, so records on a shared file system are as
    readable by the lab's group as the user's other files (mkstemp alone makes private 0600 files)."""
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0)
        os.umask(umask)
    return mode & ~umask


class DiskFullError(LabError, OSError):
    """No space (or quota) left where a record is written."""


def disk_full(error: OSError, path: Path) -> DiskFullError | None:
    """The one-line error for a full disk or quota, else None (the OSError is something else)."""
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return DiskFullError(
        f"no space left on the device holding {path} ({error.strerror}); free some space there "
        "(or point LABLIB_RUNS_DIR / LABLIB_DATA_DIR elsewhere) and run again."
    )


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, then rename. A full disk is a DiskFullError."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise disk_full(error, path) or error from None
    try:
        os.fchmod(handle, shared_mode())
        with os.fdopen(handle, "w") as stream:
            json.dump(_jsonable(data), stream, indent=1, allow_nan=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise disk_full(error, path) or error from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --- processes: who writes a record, and whether it still lives -------------------------


def process_started(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc), None when it is gone or unknown.

    With the pid it names one process: a pid reused by a later process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """pid, host and pid_started of this process, as records store them."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_started": process_started(os.getpid())}


def process_gone(record: Mapping[str, Any]) -> bool:
    """Whether the process a record names (pid, host, pid_started) is known to be gone.

    Only on the record's own host can that be seen; elsewhere (or without a pid) it is not known: False."""
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    started = process_started(pid)
    if started is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return not Path("/proc").is_dir()  # a live pid without /proc: alive
    return record.get("pid_started") is not None and started != record["pid_started"]


def effective_status(record: Mapping[str, Any]) -> str | None:
    """The status to show: "abandoned" for a "running" record whose process is gone, else its own."""
    status = record.get("status")
    return "abandoned" if status == "running" and process_gone(record) else status


# --- the store's door: writable, with room, one build at a time -----------------------------


def check_writable(folder: Path, what: str, variable: str) -> None:
    """A one-line LabError unless `folder` can be created and written, with MIN_FREE_BYTES free.

    The probe creates and removes a file, so it sees what os.access cannot (a read-only mount, ACLs)."""
    folder = Path(folder)
    fix = f"make it writable, or set {variable} to a folder you can write"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        full = disk_full(error, folder)
        if full:
            raise full from None
        raise LabError(f"{what} {folder} is not writable ({error.strerror}); {fix}.") from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise DiskFullError(
            f"{what} {folder} has {free / 2**20:.1f} MiB free, less than the {MIN_FREE_BYTES // 2**20} MiB a build "
            f"needs; free some space there, or set {variable} to a folder on another disk."
        )


@contextlib.contextmanager
def lock_store(root: Path | None = None, purpose: str = "build"):
    """Hold the run store's lock (flock on <root>/.build.lock) for one build; a LabError says who holds it.

    The file names the holder (pid, host, since when). The kernel drops a flock when its process ends,
    however it ends, so the lock of a killed build is taken over by the next one with nothing to clean."""
    import fcntl

    path = Path(root or runs_root()) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, shared_mode())
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(handle, 4096, 0) or b"{}")
            except json.JSONDecodeError:
                holder = {}
            raise LabError(
                f"the run store {path.parent} is in use by another {holder.get('purpose', 'build')}: pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}; wait for "
                "it to finish (or stop it), then run again."
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps({**this_process(), "purpose": purpose, "since": now_iso()}).encode(), 0)
        yield path
    finally:
        os.close(handle)  # releases the lock; the file stays, naming the last holder


def _watch_owner(owner: str, run: Run) -> None:
    """End this kernel when the process recording its point is gone (a build killed with SIGKILL).

    Nobody would record the point's end, so the run is marked abandoned and the kernel exits."""
    pid, _, started = owner.partition(":")
    record = {"pid": int(pid), "host": socket.gethostname(), "pid_started": int(started) if started else None}
    while not process_gone(record):
        threading.Event().wait(1.0)
        if run.meta["status"] != "running":
            return
    run.finish("abandoned", "the build that ran this point was gone (killed) before the run finished")
    os._exit(1)


def new_run_folder(section: str, root: Path | None = None) -> Path:
    """A new, unique runs/<section>/<UTC time>-<random>/ folder (mkdir fails if another run took it)."""
    base = (root or runs_root()) / section
    base.mkdir(parents=True, exist_ok=True)
    while True:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = base / f"{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def group_key(
    section: str, tag: str, settings: Mapping[str, Any], data_fingerprint: str, device: str, sweep: tuple[str, ...]
) -> str:
    """Runs with the same key are points of one sweep: equal in all but the swept settings."""
    fixed = {k: v for k, v in settings.items() if k not in sweep and k not in IGNORED_IN_GROUP}
    if "device" not in sweep:
        fixed["resolved_device"] = device
    blob = json.dumps([section, tag, data_fingerprint, fixed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def point_folder(section: str) -> Path | None:
    """The report point's folder when this process executes a point of `section`, else None."""
    given = os.environ.get(RUN_DIR_ENV)
    if not given:
        return None
    path = Path(given)
    point_section = os.environ.get(RUN_SECTION_ENV) or path.parent.name
    return path if section == point_section else None


def claim_folder(section: str, root: Path | None = None) -> tuple[Path, bool]:
    """(folder, whether it is the point's): the point's folder if this run is the first of its section, else a new one.

    The claim is the exclusive creation of run.json, so a folder is claimed once even by two runs at once.
    """
    point = point_folder(section) if root is None else None
    if point is not None:
        point.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(point / "run.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return point, True
        except FileExistsError:
            pass  # already claimed: this is a second run of the section in the same execution
    return new_run_folder(section, root), False


class Run:
    """A run being recorded. Use as a context manager, or call finish() yourself."""

    def __init__(
        self,
        section: str,
        settings: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tag: str = "",
        data: Mapping[str, Any] | None = None,
        device: Any = None,
        sweep: tuple[str, ...] | str = (),
        root: Path | None = None,
        folder: Path | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        """`folder`: record into this new folder (the measurement store names its own); `extra`: more
        fields of run.json (a measurement's key and its parts)."""
        import torch

        from lablib.core.provenance import provenance

        self.section = section
        sweep = (sweep,) if isinstance(sweep, str) else tuple(sweep)
        device = torch.device(device) if device is not None else None
        facts = provenance(device)  # before the claim: the folder's run.json is empty only for an instant
        if folder is not None:
            folder.mkdir(parents=True)
            self.path, point_run = folder, False
        else:
            self.path, point_run = claim_folder(section, root)
        self.run_id = self.path.name
        settings = dict(settings or {})
        data = dict(data or {})
        self.meta: dict[str, Any] = {
            "run_id": self.run_id,
            "section": section,
            "status": "running",
            "point_run": point_run,  # this run records the report point whose folder it took
            "tag": tag,
            "sweep": list(sweep),
            "settings": settings,
            "params": dict(params or {}),
            "data": data,
            "group": group_key(
                section, tag, settings, data.get("fingerprint", ""), device.type if device is not None else "", sweep
            ),
            "provenance": facts,
            **this_process(),  # a reader sees a "running" run whose process is gone as abandoned
            "started": now_iso(),
            "ended": None,
            "duration_s": None,
            "error": None,
            **dict(extra or {}),
        }
        self._clock_start = dt.datetime.now(dt.timezone.utc)
        self.epochs: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        write_json(self.path / "run.json", self.meta)
        owner = os.environ.get(POINT_OWNER_ENV)
        if point_run and owner:
            threading.Thread(target=_watch_owner, args=(owner, self), daemon=True, name="point-owner").start()

    # --- recording -----------------------------------------------------------
    def log_epoch(self, record: Any) -> None:
        row = record.to_dict() if hasattr(record, "to_dict") else dict(record)
        self.epochs.append(row)
        write_json(self.path / "epochs.json", self.epochs)

    def log_results(self, **values: Any) -> None:
        clash = set(values) & set(self.meta["settings"])
        if clash:
            raise LabError(f"result name(s) {sorted(clash)} clash with setting names; rename them.")
        self.results.update(values)
        write_json(self.path / "results.json", self.results)

    def uses(self, measured) -> None:
        """Record the measurements this run presents (lablib.core.store.Measured), in the order shown."""
        self.meta["uses"] = [m.use() for m in measured]
        write_json(self.path / "run.json", self.meta)

    def save_table(self, name: str, table: pd.DataFrame) -> Path:
        path = self.path / f"{name}.csv"
        temporary = self.path / f".{name}.csv.tmp"
        try:
            table.to_csv(temporary, index=False)
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise disk_full(error, path) or error from None
        return path

    def artifact(self, name: str) -> Path:
        """A path inside the run folder for a file the run writes (trace, model, binary)."""
        return self.path / name

    def finish(self, status: str = "complete", error: str | None = None) -> None:
        ended = dt.datetime.now(dt.timezone.utc)
        self.meta.update(
            status=status,
            error=error,
            ended=ended.isoformat(timespec="seconds"),
            duration_s=(ended - self._clock_start).total_seconds(),
        )
        write_json(self.path / "run.json", self.meta)  # the last write: only now is it complete

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, value, trace) -> None:
        if kind is None:
            self.finish("complete")
        else:
            self.finish("failed", "".join(traceback.format_exception(kind, value, trace))[-4000:])

    def __repr__(self) -> str:
        return f"Run({self.section!r}, {self.run_id!r}, {self.meta['status']!r})"


def start_run(
    section: str,
    config=None,
    params: Mapping[str, Any] | None = None,
    tag: str = "",
    data=None,
    device: Any = None,
    sweep: tuple[str, ...] | str = (),
) -> Run:
    """Start recording a run of `section` with a RunConfig and/or notebook parameters."""
    settings = config.to_dict() if config is not None else {}
    described = data.describe() if hasattr(data, "describe") else (data or {})
    return Run(section, settings, params, tag, described, device, sweep)


# --- reading ---------------------------------------------------------------------


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return default


def run_status(folder: Path, meta: Mapping[str, Any]) -> str | None:
    """A run's status as readers see it: abandoned when its process is gone; a report point's run takes
    its point's status when the point ended other than complete (or was abandoned), so both agree."""
    status = effective_status(meta)
    if meta.get("point_run"):
        point = _read_json(Path(folder) / "point.json", None)
        if isinstance(point, dict):
            ended = effective_status(point)
            if ended not in (None, "running", "complete"):
                return ended
    return status


def iter_runs(section: str | None = None, root: Path | None = None):
    base = root or runs_root()
    pattern = f"{section}/*/run.json" if section else "*/*/run.json"
    for meta_path in sorted(base.glob(pattern)):
        meta = _read_json(meta_path, None)
        if meta is not None:
            yield meta_path.parent, meta


def load_runs(
    section: str | None = None,
    status: str | None = "complete",
    tag: str | None = None,
    group: str | None = None,
    root: Path | None = None,
) -> pd.DataFrame:
    """One row per run: ids, status, times, device, then its settings and results as columns."""
    rows = []
    for path, meta in iter_runs(section, root):
        meta["status"] = run_status(path, meta)
        if status and meta.get("status") != status:
            continue
        if tag is not None and meta.get("tag") != tag:
            continue
        if group is not None and meta.get("group") != group:
            continue
        provenance = meta.get("provenance", {})
        rows.append(
            {
                "run_id": meta["run_id"],
                "section": meta["section"],
                "status": meta.get("status"),
                "tag": meta.get("tag"),
                "group": meta.get("group"),
                "started": meta.get("started"),
                "ended": meta.get("ended"),
                "duration_s": meta.get("duration_s"),
                "path": str(path),
                "resolved_device": provenance.get("device"),
                "device_name": provenance.get("device_name"),
                "data_fingerprint": meta.get("data", {}).get("fingerprint"),
                "uses": meta.get("uses", []),  # the measurements a presenting record shows (lablib.core.store)
                **{k: v for k, v in meta.get("params", {}).items() if k != "tag"},
                **meta.get("settings", {}),
                **_read_json(path / "results.json", {}),
            }
        )
    return pd.DataFrame(rows)


def load_epochs(section: str | None = None, **selection: Any) -> pd.DataFrame:
    """One row per epoch of the runs load_runs selects (status, tag, group, root), with the run's id and settings."""
    runs = load_runs(section, **selection)
    frames = []
    for run in runs.to_dict("records"):
        epochs = _read_json(Path(run["path"]) / "epochs.json", [])
        if epochs:
            frame = pd.DataFrame(epochs)
            for key in (
                "run_id",
                "resolved_device",
                "device_name",
                "workers",
                "optimizer",
                "device",
                "batch_norm",
                "started",
            ):
                frame[key] = run.get(key)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def latest_per(runs: pd.DataFrame, column: str | list[str]) -> pd.DataFrame:
    """The most recently finished run for each value of `column` (a sweep's points)."""
    if runs.empty:
        return runs
    return runs.sort_values("ended").groupby(column, dropna=False).tail(1).sort_values(column)


def load_run(path: Path | str) -> dict[str, Any]:
    """A run folder's run.json, epochs and results in one dict."""
    path = Path(path)
    meta = _read_json(path / "run.json", None)
    if meta is None:
        raise LabError(f"{path} holds no run record (run.json missing or unreadable).")
    meta["epochs"] = _read_json(path / "epochs.json", [])
    meta["results"] = _read_json(path / "results.json", {})
    return meta
