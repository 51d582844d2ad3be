"""One job of a build: a papermill execution of a notebook into its point's folder, or a measuring job.

A measuring job (`kind` "measure") runs `python -m lablib measure requests.json` in its folder
runs/jobs/<run-id>/: the core measures each request in turn into the measurement store
(lablib.core.store), recording each as it ends, so a killed job keeps what it finished. A walking
job (`walk`: a section whose measurements follow one another, E1's halving) then plans and measures
the section's next ones in the same process (`--walk walk.json`), each noted in walked.jsonl.
Everything below holds for both kinds.

`run_job(job)` writes point.json "running", starts papermill in a session of
its own (so a terminal's Ctrl-C reaches the build, not the point), waits up to
the plan's timeout and records how it ended: complete, failed (with the
exception's last lines), timeout or interrupted. The kernel records into the
same folder: the environment names it ($LABLIB_RUN_DIR) and the run store.

Every process of a point (papermill, its kernel, DataLoader workers) carries a
token in its environment, so a point is ended whole: papermill is interrupted
first (it shuts its kernel down), then whatever still carries the token is
killed. `Running` holds the points a build runs now; ending the build
(Ctrl-C, SIGTERM, an error) ends them all on the way out. A build killed with
SIGKILL cannot do that, so its points end themselves: papermill gets SIGTERM
when the build dies (PR_SET_PDEATHSIG) and the kernel's run, which watches the
build's pid ($LABLIB_POINT_OWNER), records itself abandoned and exits. point.json
names the build's pid and host, so readers see the point as abandoned and the
next build runs it again.

However a point ends, its run.json agrees with its point.json: a point that did
not end complete gives its status to the run its notebook recorded
(lablib.report.points.settle_run), even when that run had finished its record.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.paths import REPO_ROOT
from lablib.core.runs import (
    POINT_OWNER_ENV,
    RUN_DIR_ENV,
    RUN_SECTION_ENV,
    now_iso,
    process_started,
    runs_root,
    this_process,
)
from lablib.core.timing import now
from lablib.report.points import settle_run, write_point

TOKEN_ENV = "LABLIB_POINT_TOKEN"  # marks every process of one point, so all of them can be ended
KERNEL_ENV = "LABLIB_KERNEL"  # the Jupyter kernel papermill starts (default python3, the environment's own)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Job:
    """One job to execute: a notebook with its parameters, or measuring requests, into a folder."""

    section: str  # the plan section it belongs to
    notebook: Path | None
    parameters: dict[str, Any]
    key: str
    folder: Path
    timeout_s: float
    label: str = ""  # what it does in a few words, e.g. "training sgd, 4 workers"
    record: dict[str, Any] = field(default_factory=dict)  # written into point.json as is (profile, placement)
    env: dict[str, str] = field(default_factory=dict)  # added to the environment (a thread share, a GPU)
    kind: str = "notebook"  # notebook | measure
    requests: tuple[dict[str, Any], ...] = ()  # a measuring job's requests: [{"request": ..., "asked_by": ...}]
    walk: dict[str, Any] | None = None  # a measuring job that walks its section on (lablib.report.measure.walk_job)

    @property
    def name(self) -> str:
        return f"{self.section} {self.label}".strip()

    @property
    def output(self) -> Path:
        return self.folder / "notebook.ipynb"

    @property
    def log(self) -> Path:
        return self.folder / "papermill.log"

    def placed(self, env: dict[str, str], **record: Any) -> Job:
        """The same job with an executor's placement: environment added, placement recorded."""
        return dataclasses.replace(self, env={**self.env, **env}, record={**self.record, **record})


@dataclass
class Outcome:
    """How one job ended, whichever executor ran it."""

    status: str  # complete | failed | timeout | interrupted | cancelled
    seconds: float
    error: str | None = None  # the exception's last lines, the timeout, or the scheduler's log tail
    parallel_with: list[str] = field(default_factory=list)  # names of the jobs that ran beside it

    @property
    def ok(self) -> bool:
        return self.status == "complete"


class Running:
    """The papermill processes this build runs now, by token; `stop_all` ends every one."""

    def __init__(self) -> None:
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.stopping = False

    def add(self, token: str, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes[token] = process

    def remove(self, token: str) -> None:
        with self._lock:
            self._processes.pop(token, None)

    def stop_all(self) -> None:
        self.stopping = True
        with self._lock:
            running = list(self._processes.items())
        for token, process in running:
            end_processes(process, token)


def command(job: Job, python: str = sys.executable, kernel: str | None = None, cwd: Path = REPO_ROOT) -> list[str]:
    """papermill's command line; the kernel is $LABLIB_KERNEL (make gpu-check: the node's own), else python3."""
    kernel = kernel or os.environ.get(KERNEL_ENV) or "python3"
    if job.kind == "measure":
        requests = job.folder / "requests.json"
        requests.write_text(json.dumps(list(job.requests), indent=1, default=str))
        if job.walk is None:
            return [python, "-m", "lablib", "measure", str(requests)]
        walk = job.folder / "walk.json"
        walk.write_text(json.dumps(job.walk, indent=1, default=str))
        return [python, "-m", "lablib", "measure", str(requests), "--walk", str(walk)]
    parameters = job.folder / "parameters.json"  # JSON is YAML: papermill -f reads it
    parameters.write_text(json.dumps(job.parameters, indent=1))
    return [
        python,
        "-m",
        "papermill",
        str(job.notebook),
        str(job.output),
        "-f",
        str(parameters),
        "--cwd",
        str(cwd),
        "-k",
        kernel,
        "--log-output",
        "--progress-bar",
        "--request-save-on-cell-execute",
    ]


def environment(job: Job, token: str, cwd: Path = REPO_ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env[RUN_DIR_ENV] = str(job.folder)  # the kernel's run records into the point's folder
    # under the plan section's name: e1_cifar10's point lies under its notebook's stem (runs/e1_hparam_sweep/)
    env[RUN_SECTION_ENV] = job.section
    env["LABLIB_RUNS_DIR"] = str(runs_root())  # and reads the same store
    env[TOKEN_ENV] = token
    env[POINT_OWNER_ENV] = f"{os.getpid()}:{process_started(os.getpid()) or ''}"  # the kernel ends if we die
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env["PYTHONUNBUFFERED"] = "1"
    if job.kind == "notebook":
        env["LABLIB_MEASURE"] = "reuse"  # a notebook presents; the build measured before it
    else:
        env.pop("LABLIB_MEASURE", None)
    env.update(job.env)
    return env


try:  # looked up here, not in the child: between fork and exec only the call itself is safe
    _PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG = 1).

    run_job waits in the thread that started papermill, so that thread ends only after papermill does."""
    _PRCTL(1, signal.SIGTERM)


def processes_with_token(token: str) -> list[int]:
    """Ids of the processes that carry the token in their environment (this process excluded)."""
    marker = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def end_processes(process: subprocess.Popen, token: str) -> None:
    """Interrupt papermill (it shuts its kernel down), then kill whatever of this point is left."""
    for sig, wait_s in ((signal.SIGINT, 10), (signal.SIGTERM, 5)):
        if process.poll() is None:
            try:
                process.send_signal(sig)
                process.wait(wait_s)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
    for pid in processes_with_token(token) + ([process.pid] if process.poll() is None else []):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass


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


def record_point(job: Job, status: str, **fields: Any) -> dict[str, Any]:
    """Write the job's point.json with `status` (and `fields`); returns the record."""
    return write_point(
        job.folder,
        {
            "key": job.key,
            "kind": job.kind,
            "section": job.section,
            "label": job.label,
            "status": status,
            "notebook": str(job.notebook) if job.notebook else None,
            "parameters": job.parameters,
            "executed": str(job.output),
            "log": str(job.log),
            "timeout_s": job.timeout_s,
            **job.record,
            **fields,
        },
    )


def run_job(job: Job, running: Running | None = None) -> Outcome:
    """Execute the job's notebook into its folder; the Outcome says how it ended (also in point.json).

    `running` is the build's register of live points (None: a job on its own, e.g. a Slurm task).
    An exception here (Ctrl-C when this runs in the main thread) ends the point and is raised again.
    """
    running = running or Running()
    token = secrets.token_hex(8)
    # pid and host: the process that records the point's end, so a reader sees when it is gone
    record_point(job, "running", started=now_iso(), ended=None, duration_s=None, error=None, **this_process())
    started = now()
    with open(job.log, "w") as log:
        process = subprocess.Popen(
            command(job),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(job, token),
            cwd=REPO_ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent if _PRCTL else None,
        )
        running.add(token, process)
        try:
            returncode = process.wait(timeout=job.timeout_s)
            done = job.output.is_file() if job.kind == "notebook" else True
            status = "complete" if returncode == 0 and done else "failed"
            if running.stopping and status != "complete":
                status = "interrupted"
        except subprocess.TimeoutExpired:
            end_processes(process, token)
            status = "timeout"
        except BaseException:
            end_processes(process, token)
            settle_run(job.folder, "interrupted", _INTERRUPTED)  # run.json first: point.json is the last word
            record_point(job, "interrupted", ended=now_iso(), duration_s=now() - started, error=_INTERRUPTED)
            raise
        finally:
            running.remove(token)
    seconds = now() - started
    error = None
    if status == "timeout":
        error = (
            f"timed out after {job.timeout_s:.0f} s (the plan's timeout for this point); "
            f"the last lines of its log:\n{error_tail(Path('/nonexistent'), job.log, 6)}"
        )
    elif status == "failed" and job.kind == "measure":
        error = error_tail(Path("/nonexistent"), job.log, 8) or f"the measuring job exited with status {returncode}"
    elif status == "failed":
        error = error_tail(job.output, job.log) or f"papermill exited with status {returncode}"
    elif status == "interrupted":
        error = _INTERRUPTED
    settle_run(job.folder, status, error)
    record_point(job, status, ended=now_iso(), duration_s=seconds, error=error)
    return Outcome(status, seconds, error)


_INTERRUPTED = "interrupted (Ctrl-C or kill) before the job finished"
