"""Where a report's points run: here one or N at a time, or as a Slurm job array.

An executor takes Tasks (a label, whether the point is `exclusive`, and a
picklable payload) and a module-level function `run_task(payload, env) ->
Outcome`, and returns one Outcome per task. The function does the real work
(a papermill execution into the run store); the executor decides where and
beside what it runs:

- LocalExecutor(jobs=N): up to N non-exclusive tasks at once, each in its own
  process environment: its own GPU (CUDA_VISIBLE_DEVICES) when the machine has
  several, and its share of the CPU threads (OMP_NUM_THREADS). An exclusive
  task (one whose purpose is timing) never shares the machine: it waits until
  nothing else runs, and nothing starts beside it.
- SlurmExecutor: one submitit job array per kind (exclusive tasks get
  `--exclusive` nodes); waits with queued/running/done/failed counts; a failed
  task brings its log tail; Ctrl-C offers to scancel what was submitted.

Records stay whole either way: run_task writes atomically and marks a run
complete only at its end, so a cancelled or killed task is simply stale.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.errors import LabError


@dataclass(frozen=True)
class Task:
    label: str  # e.g. "c3_workers workers=8"
    payload: Any  # what run_task needs; picklable for Slurm
    exclusive: bool = False  # a timing point: never runs beside another


@dataclass
class Outcome:
    label: str
    status: str  # complete | failed | timeout | cancelled
    seconds: float = 0.0
    detail: str = ""  # the error's last lines or log tail, for the report and the summary
    parallel_with: list[str] = field(default_factory=list)  # labels that ran at the same time

    @property
    def ok(self) -> bool:
        return self.status == "complete"


RunTask = Callable[[Any, Mapping[str, str]], Outcome]
Notify = Callable[[Task, Outcome], None]


def visible_gpus() -> list[str]:
    """GPU ids this process may hand out: CUDA_VISIBLE_DEVICES when set, else all torch sees."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g for g in given.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def thread_share(jobs: int, cores: int | None = None) -> int:
    """CPU threads each of `jobs` parallel tasks gets (at least 1)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, jobs))


class LocalExecutor:
    """Runs tasks on this machine, `jobs` non-exclusive ones at a time."""

    name = "local"

    def __init__(self, jobs: int = 1, gpus: Sequence[str] | None = None):
        if jobs < 1:
            raise LabError(f"JOBS={jobs} is not allowed; use a whole number >= 1.")
        self.jobs = jobs
        self.gpus = list(gpus) if gpus is not None else visible_gpus()

    def _env(self, slot: int, alone: bool) -> dict[str, str]:
        env: dict[str, str] = {}
        if alone or self.jobs == 1:
            return env  # the whole machine, as the user's environment gives it
        env["OMP_NUM_THREADS"] = str(thread_share(self.jobs))
        if len(self.gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def run(self, tasks: Sequence[Task], run_task: RunTask, notify: Notify | None = None) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        running: dict[Future, tuple[int, int]] = {}  # future -> (task index, slot)
        active: dict[int, str] = {}  # task index -> label of what runs now
        overlaps: dict[int, set[str]] = {}  # task index -> labels that ran beside it
        lock = threading.Lock()
        pending = list(range(len(tasks)))

        def start(pool: ThreadPoolExecutor, index: int, slot: int, alone: bool) -> None:
            task = tasks[index]
            with lock:
                overlaps[index] = set(active.values())
                for other in active:
                    overlaps[other].add(task.label)
                active[index] = task.label
            running[pool.submit(self._guarded, run_task, task, self._env(slot, alone))] = (index, slot)

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while pending or running:
                    free_slots = [s for s in range(self.jobs) if s not in {v[1] for v in running.values()}]
                    exclusive_running = any(tasks[i].exclusive for i, _ in running.values())
                    while pending and free_slots and not exclusive_running:
                        index = pending[0]
                        if tasks[index].exclusive:
                            if running:
                                break  # wait for the machine to be free
                            pending.pop(0)
                            start(pool, index, free_slots.pop(0), alone=True)
                            break
                        pending.pop(0)
                        start(pool, index, free_slots.pop(0), alone=False)
                    if not running:
                        continue
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        index, _slot = running.pop(future)
                        outcome = future.result()
                        with lock:
                            active.pop(index, None)
                            outcome.parallel_with = sorted(overlaps[index])
                        outcomes[index] = outcome
                        if notify:
                            notify(tasks[index], outcome)
            except KeyboardInterrupt:
                for future in running:
                    future.cancel()
                raise
        return [outcomes[i] for i in range(len(tasks))]

    @staticmethod
    def _guarded(run_task: RunTask, task: Task, env: Mapping[str, str]) -> Outcome:
        start = time.monotonic()
        try:
            return run_task(task.payload, env)
        except Exception as error:  # a bug in run_task must not stop the other points
            return Outcome(task.label, "failed", time.monotonic() - start, f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class SlurmSettings:
    """sbatch resources for each task; from the plan or Make variables (SLURM_*)."""

    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    time_min: int = 60
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. {"account": "lab"} -> --account=lab
    array_parallelism: int = 64

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, base: SlurmSettings | None = None) -> SlurmSettings:
        base = base or cls()

        def number(name: str, kind: type, default):
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                return kind(raw)
            except ValueError:
                raise LabError(f"{name}={raw!r} is not a {kind.__name__}; fix the Make variable.") from None

        extra = dict(base.extra)
        for item in env.get("SLURM_EXTRA", "").split():
            key, _, value = item.lstrip("-").partition("=")
            extra[key] = value or True  # a bare flag such as --exclusive
        return cls(
            partition=env.get("SLURM_PARTITION") or base.partition,
            gpus_per_task=number("SLURM_GPUS", int, base.gpus_per_task),
            cpus_per_task=number("SLURM_CPUS", int, base.cpus_per_task),
            mem_gb=number("SLURM_MEM_GB", float, base.mem_gb),
            time_min=number("SLURM_TIME_MIN", int, base.time_min),
            extra=extra,
            array_parallelism=base.array_parallelism,
        )


class SlurmExecutor:
    """Runs tasks as Slurm job arrays through submitit, on a shared file system."""

    name = "slurm"

    def __init__(
        self,
        folder: Path,
        settings: SlurmSettings | None = None,
        poll_s: float = 2.0,
        confirm_cancel: Callable[[], bool] | None = None,
    ):
        import shutil

        if shutil.which("sbatch") is None:
            raise LabError(
                "EXECUTOR=slurm needs Slurm's sbatch on PATH; run on a cluster login node, or use EXECUTOR=local."
            )
        self.folder = Path(folder)
        self.settings = settings or SlurmSettings()
        self.poll_s = poll_s
        self.confirm_cancel = confirm_cancel or _ask_to_cancel

    def _executor(self, exclusive: bool):
        import submitit

        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        executor.update_parameters(
            name="lablib",
            slurm_partition=self.settings.partition,
            cpus_per_task=self.settings.cpus_per_task,
            mem_gb=self.settings.mem_gb,
            timeout_min=self.settings.time_min,
            slurm_array_parallelism=self.settings.array_parallelism,
            slurm_additional_parameters=dict(self.settings.extra),
            slurm_exclusive=exclusive or None,
            **({"gpus_per_node": self.settings.gpus_per_task} if self.settings.gpus_per_task else {}),
        )
        return executor

    def run(
        self,
        tasks: Sequence[Task],
        run_task: RunTask,
        notify: Notify | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[Outcome]:
        progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        jobs: dict[int, Any] = {}
        for exclusive in (False, True):
            chosen = [i for i, t in enumerate(tasks) if t.exclusive == exclusive]
            if not chosen:
                continue
            try:
                submitted = self._executor(exclusive).map_array(
                    run_task, [tasks[i].payload for i in chosen], [{} for _ in chosen]
                )
            except Exception as error:  # submitit's FailedJobError: sbatch refused or no controller
                raise LabError(
                    f"submitting to Slurm failed ({str(error).strip()[-400:]}); check the cluster "
                    "with `sinfo` and the SLURM_* settings (partition, time, memory)."
                ) from None
            jobs.update(zip(chosen, submitted))
        outcomes: dict[int, Outcome] = {}
        started = time.monotonic()
        try:
            last_line = ""
            while len(outcomes) < len(jobs):
                counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
                for index, job in jobs.items():
                    if index in outcomes:
                        counts["done" if outcomes[index].ok else "failed"] += 1
                        continue
                    state = job.state
                    if job.done():
                        outcomes[index] = self._outcome(tasks[index], job, time.monotonic() - started)
                        counts["done" if outcomes[index].ok else "failed"] += 1
                        if notify:
                            notify(tasks[index], outcomes[index])
                    elif state in ("RUNNING", "COMPLETING"):
                        counts["running"] += 1
                    else:
                        counts["queued"] += 1
                line = "slurm: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                if line != last_line:
                    progress(line)
                    last_line = line
                if len(outcomes) < len(jobs):
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            waiting = [job for index, job in jobs.items() if index not in outcomes]
            if waiting and self.confirm_cancel():
                for job in waiting:
                    job.cancel(check=False)  # scancel
                progress(f"slurm: cancelled {len(waiting)} job(s); their points stay stale")
            raise
        return [outcomes[i] for i in range(len(tasks))]

    @staticmethod
    def _outcome(task: Task, job, seconds: float) -> Outcome:
        state = job.state
        try:
            result = job.result()
        except Exception as error:  # the task raised, timed out, or was cancelled
            tail = _tail(job.stderr() or "") or str(error)
            status = "timeout" if "TIMEOUT" in state else "cancelled" if "CANCEL" in state else "failed"
            return Outcome(task.label, status, seconds, f"slurm job {job.job_id} ({state}):\n{tail}")
        if isinstance(result, Outcome):
            if not result.ok and not result.detail:
                result.detail = _tail(job.stderr() or "")
            return result
        if hasattr(result, "status"):  # another layer's outcome, e.g. lablib.report.execute.Outcome
            detail = getattr(result, "error", None) or (
                "" if result.status == "complete" else _tail(job.stderr() or "")
            )
            return Outcome(task.label, result.status, getattr(result, "duration_s", seconds), detail or "")
        return Outcome(task.label, "failed", seconds, f"slurm job {job.job_id} returned {result!r}")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _ask_to_cancel() -> bool:
    """Ask on a terminal; without one (CI, nohup), cancel."""
    if not sys.stdin or not sys.stdin.isatty():
        return True
    try:
        answer = input("\ncancel the submitted Slurm jobs (scancel)? [Y/n] ")
    except (EOFError, KeyboardInterrupt):
        return True
    return answer.strip().lower() in ("", "y", "yes")


def make_executor(name: str, jobs: int = 1, folder: Path | None = None, settings: SlurmSettings | None = None):
    if name == "local":
        return LocalExecutor(jobs)
    if name == "slurm":
        return SlurmExecutor(folder or Path("runs") / "_slurm", settings)
    raise LabError(f"EXECUTOR={name!r} is unknown; use local or slurm.")


def probe(payload: Mapping[str, Any], env: Mapping[str, str]) -> Outcome:
    """A diagnostic task: sleep, then write when/where it ran into payload["folder"].

    Used to check an executor end to end (parallelism, exclusivity, the
    environment each task gets, a Slurm array on a real cluster).
    """
    import json
    import socket

    from lablib.core.runs import write_json
    from lablib.core.timing import now

    start = now()
    time.sleep(float(payload.get("sleep_s", 0.0)))
    if payload.get("fail"):
        raise RuntimeError(f"probe {payload['name']} failed on purpose")
    folder = Path(payload["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "name": payload["name"],
        "start": start,
        "end": now(),
        "host": socket.gethostname(),
        "env": {
            k: v
            for k, v in {**os.environ, **env}.items()
            if k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID")
        },
    }
    write_json(folder / f"{payload['name']}.json", record)
    return Outcome(payload["name"], "complete", record["end"] - start, json.dumps(record["env"]))
