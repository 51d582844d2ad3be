"""Execute one plan point: papermill in a subprocess, into the point's own run folder.

A point is (notebook, parameters). Its folder is runs/<section>/<run-id>/ and holds

    point.json      key, status (running -> complete | failed | timeout | interrupted),
                    parameters, duration, error tail, executed notebook and log paths
    notebook.ipynb  the executed notebook (papermill writes it as cells finish)
    papermill.log   papermill's cell progress and the cells' output
    run.json, ...   the notebook's own record: $LABLIB_RUN_DIR points the kernel here

point.json is written atomically and says "complete" only after papermill
succeeded, so a killed build never leaves a point that looks finished.

The key of a point is a hash of everything that decides its result: the
notebook's cells (no outputs), the parameters, the lablib source the notebooks
use, the data's fingerprint, the locked environment and the device kind. A
point is up to date when a complete point.json with its key exists.

Executors run a Job and return its Outcome; LocalExecutor runs them one at a
time on this machine (issue 7 adds parallel and Slurm executors with the same
interface).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.paths import REPO_ROOT
from lablib.core.runs import RUN_DIR_ENV, new_run_folder, now_iso, runs_root, write_json
from lablib.core.timing import now

# The layers whose code decides what a notebook measures: hashed into every point's key. The report
# layer and the commands on top (cli, bench) are outside it by construction.
KEYED_LAYERS = ("core", "sections")
POINT_FILE = "point.json"
TOKEN_ENV = "LABLIB_POINT_TOKEN"  # marks every process of one point, so a timeout can end them all
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --- the key ---------------------------------------------------------------------


def notebook_digest(path: Path) -> str:
    """sha256 of the cells' types, sources and tags (outputs, counts and ids excluded)."""
    notebook = json.loads(Path(path).read_text())
    cells = [
        [c.get("cell_type"), "".join(c.get("source", "")), sorted(c.get("metadata", {}).get("tags", []))]
        for c in notebook.get("cells", [])
    ]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def lablib_digest(package: Path = REPO_ROOT / "lablib", layers: tuple[str, ...] = KEYED_LAYERS) -> str:
    """sha256 of every Python file under the keyed layers (recursively), with its path.

    A module added, removed, renamed or edited anywhere in lablib/core or lablib/sections
    changes the digest; the report layer and the commands on top never do.
    """
    digest = hashlib.sha256()
    for layer in layers:
        for module in sorted((package / layer).rglob("*.py")):
            if "__pycache__" in module.parts:
                continue
            digest.update(module.relative_to(package).as_posix().encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()


def device_kind() -> str:
    """What the measurements ran on: 'cuda:<gpu name>' or 'cpu:<cpu model>'."""
    import torch

    from lablib.core.provenance import cpu_model

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{cpu_model()}"


def data_fingerprint(data: str, cache_dir: Path | None = None) -> str:
    """The fingerprint lablib.core.data gives a source (equal to the records' data.fingerprint).

    A .zip's sha256 is cached under (path, size, mtime) so an up-to-date check costs no read.
    """
    from lablib.core.data import NAMED_SOURCES, _archive_fingerprint, default_data_dir

    if not data:
        return "no data"
    if data in NAMED_SOURCES:
        return NAMED_SOURCES[data]
    path = Path(data).expanduser().resolve()
    if not path.exists():
        return f"missing:{path}"
    stat = path.stat()
    cache = (cache_dir or default_data_dir() / "cache") / "fingerprints.json"
    stamp = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    if stamp not in known:
        known[stamp] = f"imagefolder-{_archive_fingerprint(path)[:24]}"
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, known)
        except OSError:
            pass  # read-only data dir: compute again next time
    return known[stamp]


def point_key(
    notebook: str, parameters: Mapping[str, Any], lablib: str, data: str, environment: str, device: str
) -> str:
    """The key of a point from its parts' digests (see the module docstring)."""
    blob = json.dumps(
        {
            "notebook": notebook,
            "parameters": dict(parameters),
            "lablib": lablib,
            "data": data,
            "environment": environment,
            "device": device,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# --- the store of points -------------------------------------------------------------


def read_point(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / POINT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def index_points(root: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """key -> every recorded attempt of that point (newest last), each with its folder."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root or runs_root()).glob(f"*/*/{POINT_FILE}")):
        point = read_point(path.parent)
        if point and point.get("key"):
            point["folder"] = str(path.parent)
            found.setdefault(point["key"], []).append(point)
    for attempts in found.values():
        attempts.sort(key=lambda p: p.get("started") or "")
    return found


def latest_complete(index: Mapping[str, list[dict]], key: str) -> dict | None:
    complete = [
        p for p in index.get(key, []) if p.get("status") == "complete" and Path(p["folder"], "notebook.ipynb").is_file()
    ]
    return complete[-1] if complete else None


new_point_folder = new_run_folder  # a point's folder is its run's folder


# --- running -------------------------------------------------------------------------


@dataclass
class Job:
    section: str
    notebook: Path
    parameters: dict[str, Any]
    key: str
    folder: Path
    timeout_s: float
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in point.json as is
    env: dict[str, str] = field(default_factory=dict)  # extra environment (e.g. a parallel job's thread share)

    @property
    def output(self) -> Path:
        return self.folder / "notebook.ipynb"

    @property
    def log(self) -> Path:
        return self.folder / "papermill.log"


@dataclass
class Outcome:
    status: str  # complete | failed | timeout | interrupted
    duration_s: float
    error: str | None = None


def error_tail(executed: Path, log: Path | None = None, lines: int = 12) -> str:
    """The exception's last lines: its message and where it was raised (the notebook cell and the
    innermost file), from the executed notebook's error output; else the log's last lines."""
    try:
        notebook = json.loads(Path(executed).read_text())
        for cell in notebook.get("cells", []):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    trace = _ANSI.sub("", "\n".join(output.get("traceback", []))).splitlines()
                    places = [line.strip() for line in trace if line.lstrip().startswith(("File ", "Cell In"))]
                    summary = f"{output.get('ename')}: {_ANSI.sub('', output.get('evalue', ''))}"
                    where = [f"  in the notebook: {places[0]}"] if places else []
                    if len(places) > 1:
                        where.append(f"  raised at: {places[-1]}")
                    return "\n".join([summary, *where])
    except (OSError, json.JSONDecodeError):
        pass
    try:
        text = _ANSI.sub("", Path(log).read_text(errors="replace")) if log else ""
    except OSError:
        text = ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _set_parent_death_signal() -> None:
    """Linux: the child gets SIGTERM if the build process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _processes_with_token(token: str) -> list[int]:
    """Ids of this point's processes (papermill, its kernel, DataLoader workers): they carry the token."""
    marker = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _end_processes(process: subprocess.Popen, token: str) -> None:
    """Interrupt papermill (it shuts its kernel down), then kill whatever of this point is left."""
    for sig, wait_s in ((signal.SIGINT, 10), (signal.SIGTERM, 5)):
        if process.poll() is None:
            try:
                process.send_signal(sig)
                process.wait(wait_s)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
    for pid in _processes_with_token(token) + ([process.pid] if process.poll() is None else []):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass


def write_point(job: Job, status: str, **fields: Any) -> None:
    previous = read_point(job.folder) or {}
    write_json(
        job.folder / POINT_FILE,
        {
            **previous,
            "key": job.key,
            "section": job.section,
            "label": job.label,
            "status": status,
            "notebook": str(job.notebook),
            "parameters": job.parameters,
            "executed": str(job.output),
            "log": str(job.log),
            "timeout_s": job.timeout_s,
            **job.extra,
            **fields,
        },
    )


class LocalExecutor:
    """Runs jobs one at a time on this machine, each in its own papermill process."""

    def __init__(self, python: str = sys.executable, kernel: str = "python3", cwd: Path = REPO_ROOT):
        self.python, self.kernel, self.cwd = python, kernel, Path(cwd)
        self.running: dict[str, subprocess.Popen] = {}  # token -> papermill process (several with JOBS > 1)
        self.stopping = False

    def stop_all(self) -> None:
        """End every running point (Ctrl-C with parallel jobs); each is then marked interrupted."""
        self.stopping = True
        for token, process in list(self.running.items()):
            _end_processes(process, token)

    def command(self, job: Job) -> list[str]:
        parameters = job.folder / "parameters.json"  # JSON is YAML: papermill -f reads it
        parameters.write_text(json.dumps(job.parameters, indent=1))
        return [
            self.python,
            "-m",
            "papermill",
            str(job.notebook),
            str(job.output),
            "-f",
            str(parameters),
            "--cwd",
            str(self.cwd),
            "-k",
            self.kernel,
            "--log-output",
            "--progress-bar",
            "--request-save-on-cell-execute",
        ]

    def environment(self, job: Job, token: str) -> dict[str, str]:
        env = dict(os.environ)
        env[RUN_DIR_ENV] = str(job.folder)
        env["LABLIB_RUNS_DIR"] = str(runs_root())  # the kernel records into the same store
        env[TOKEN_ENV] = token
        env["PYTHONPATH"] = os.pathsep.join([str(self.cwd), *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(job.env)
        return env

    def run(self, job: Job) -> Outcome:
        token = secrets.token_hex(8)
        write_point(job, "running", started=now_iso(), ended=None, duration_s=None, error=None)
        started = now()
        with open(job.log, "w") as log:
            process = subprocess.Popen(
                self.command(job),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(job, token),
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal,
            )
            self.running[token] = process
            try:
                returncode = process.wait(timeout=job.timeout_s)
                status = "complete" if returncode == 0 and job.output.is_file() else "failed"
                if self.stopping and status != "complete":
                    raise KeyboardInterrupt
            except subprocess.TimeoutExpired:
                _end_processes(process, token)
                status = "timeout"
            except BaseException:  # Ctrl-C or SIGTERM of the build: end this point, keep the others
                _end_processes(process, token)
                duration = now() - started
                write_point(
                    job,
                    "interrupted",
                    ended=now_iso(),
                    duration_s=duration,
                    error="interrupted (Ctrl-C or kill) before the notebook finished",
                )
                raise
            finally:
                self.running.pop(token, None)
        duration = now() - started
        error = None
        if status == "timeout":
            error = (
                f"timed out after {job.timeout_s:.0f} s (the plan's timeout for this point); "
                f"the last lines of its log:\n{error_tail(Path('/nonexistent'), job.log, 6)}"
            )
        elif status == "failed":
            error = error_tail(job.output, job.log) or f"papermill exited with status {returncode}"
        write_point(job, status, ended=now_iso(), duration_s=duration, error=error)
        return Outcome(status, duration, error)


def run_job(job: Job, env: Mapping[str, str]) -> Outcome:
    """Run one job here, with `env` added: what a Slurm task (lablib.report.executors) runs on its node.

    The same papermill execution into the same run folder as a local build, so the records are alike.
    """
    import dataclasses

    return LocalExecutor().run(dataclasses.replace(job, env={**job.env, **env}))
