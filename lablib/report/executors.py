"""Where a build's jobs run: on this machine, one or N at a time, or as Slurm job arrays.

Both executors take Tasks (a Job and whether it is `exclusive`) and return one
Outcome per task, in order; `on_start(task)` and `on_end(task, outcome)` are
called from the calling thread as tasks start and end (the progress lines).

- LocalExecutor(jobs=N): up to N non-exclusive tasks at once, each with its
  share of the CPU threads (OMP_NUM_THREADS) and, when the machine has several
  GPUs, its own GPU (CUDA_VISIBLE_DEVICES). An exclusive task (a timing point)
  never shares the machine: it waits until nothing else runs, and nothing
  starts beside it. Jobs are started and waited for in worker threads; Ctrl-C
  or SIGTERM in the calling thread ends every running point (each is recorded
  "interrupted") before KeyboardInterrupt goes on up.
- SlurmExecutor: one submitit job array per kind (exclusive tasks get
  `--exclusive` nodes); each array task runs the same `run_job` into the same
  run store on a shared file system. It waits with queued/running/done/failed
  counts; a failed task brings its log tail; Ctrl-C offers to scancel.

Records stay whole either way: a point is complete only when its notebook
finished, so a cancelled or killed task is simply stale.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.errors import LabError
from lablib.core.runs import now_iso
from lablib.report.job import Job, Outcome, Running, run_job
from lablib.report.points import read_point, settle_run, write_point


@dataclass(frozen=True)
class Task:
    job: Job
    exclusive: bool = False  # a timing point: never runs beside another


RunJob = Callable[[Job, Running], Outcome]
OnStart = Callable[[Task], None]
OnEnd = Callable[[Task, Outcome], None]


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

    def __init__(self, jobs: int = 1, gpus: Sequence[str] | None = None, run: RunJob = run_job):
        if not isinstance(jobs, int) or jobs < 1:
            raise LabError(f"JOBS={jobs} is not allowed; use a whole number >= 1.")
        self.jobs = jobs
        self.gpus = list(gpus) if gpus is not None else (visible_gpus() if jobs > 1 else [])
        self._run = run

    def place(self, task: Task, slot: int) -> Job:
        """The task's job with its environment: the whole machine alone, else a thread share and a GPU."""
        parallel = self.jobs > 1 and not task.exclusive
        env: dict[str, str] = {}
        if parallel:
            threads = str(thread_share(self.jobs))
            # LABLIB_SHARED: measurements made here shared the machine, so a timing never reuses them.
            env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "LABLIB_SHARED": "1"}
            if len(self.gpus) > 1:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return task.job.placed(env, executor=self.name, parallel=parallel, jobs=self.jobs if parallel else 1)

    def run(self, tasks: Sequence[Task], on_start: OnStart | None = None, on_end: OnEnd | None = None) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        futures: dict[Future, tuple[int, int]] = {}  # future -> (task index, slot)
        beside: dict[int, set[str]] = {}  # task index -> names of the tasks that ran beside it
        pending = list(range(len(tasks)))
        running = Running()

        def start(pool: ThreadPoolExecutor, index: int, slot: int) -> None:
            task = tasks[index]
            beside[index] = {tasks[i].job.name for i, _ in futures.values()}
            for other, _ in futures.values():
                beside[other].add(task.job.name)
            if on_start:
                on_start(task)
            futures[pool.submit(self._guarded, self.place(task, slot), running)] = (index, slot)

        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="point") as pool:
            try:
                while pending or futures:
                    busy = {slot for _, slot in futures.values()}
                    free = [s for s in range(self.jobs) if s not in busy]
                    alone = any(tasks[i].exclusive for i, _ in futures.values())
                    while pending and free and not alone:
                        if tasks[pending[0]].exclusive and futures:
                            break  # an exclusive task waits for the machine to be free
                        alone = tasks[pending[0]].exclusive
                        start(pool, pending.pop(0), free.pop(0))
                    done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                    for future in done:
                        index, _slot = futures.pop(future)
                        outcome = future.result()
                        outcome.parallel_with = sorted(beside[index])
                        outcomes[index] = outcome
                        if on_end:
                            on_end(tasks[index], outcome)
            except BaseException:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt) or a bug: end every point
                running.stop_all()
                raise
        return [outcomes[i] for i in range(len(tasks))]

    def _guarded(self, job: Job, running: Running) -> Outcome:
        started = time.monotonic()
        try:
            return self._run(job, running)
        except Exception as error:  # a bug in one job must not stop the others
            return Outcome("failed", time.monotonic() - started, f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class SlurmSettings:
    """sbatch resources for each task; from the Make variables (SLURM_*)."""

    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    time_min: int = 60
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"account": "lab"} -> --account=lab
    array_parallelism: int = 64

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, base: SlurmSettings | None = None) -> SlurmSettings:
        base = base or cls()

        def number(name: str, kind: type, default, least: float = 1):
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise LabError(f"{name}={raw!r} is not a {kind.__name__}; fix the Make variable.") from None
            if not value >= least:  # NaN too
                raise LabError(f"{name}={raw!r} is not allowed; use a {kind.__name__} >= {least:g}.")
            return value

        extra = dict(base.extra)
        for item in env.get("SLURM_EXTRA", "").split():
            key, _, value = item.lstrip("-").partition("=")
            extra[key] = value or True  # a bare flag such as --exclusive
        return cls(
            partition=env.get("SLURM_PARTITION") or base.partition,
            gpus_per_task=number("SLURM_GPUS", int, base.gpus_per_task, least=0),
            cpus_per_task=number("SLURM_CPUS", int, base.cpus_per_task),
            mem_gb=number("SLURM_MEM_GB", float, base.mem_gb, least=0.1),
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
        progress: Callable[[str], None] | None = None,
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
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))

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

    def place(self, task: Task) -> Job:
        """A non-exclusive task may share its node with other tasks of the array (LABLIB_SHARED says so)."""
        env = {} if task.exclusive else {"LABLIB_SHARED": "1"}
        return task.job.placed(env, executor=self.name, parallel=not task.exclusive, jobs=1)

    def run(self, tasks: Sequence[Task], on_start: OnStart | None = None, on_end: OnEnd | None = None) -> list[Outcome]:
        jobs = [self.place(task) for task in tasks]
        submitted: dict[int, Any] = {}
        for exclusive in (False, True):
            chosen = [i for i, t in enumerate(tasks) if t.exclusive == exclusive]
            if not chosen:
                continue
            try:
                handles = self._executor(exclusive).map_array(run_job, [jobs[i] for i in chosen])
            except Exception as error:  # submitit's FailedJobError: sbatch refused or no controller
                raise LabError(
                    f"submitting to Slurm failed ({str(error).strip()[-400:]}); check the cluster "
                    "with `sinfo` and the SLURM_* settings (partition, time, memory)."
                ) from None
            submitted.update(zip(chosen, handles))
            for index in chosen:
                if on_start:
                    on_start(tasks[index])
        outcomes: dict[int, Outcome] = {}
        started = time.monotonic()
        try:
            last_line = ""
            while len(outcomes) < len(submitted):
                counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
                for index, handle in submitted.items():
                    if index not in outcomes and handle.done():
                        outcomes[index] = self._outcome(jobs[index], handle, time.monotonic() - started)
                        if on_end:
                            on_end(tasks[index], outcomes[index])
                    if index in outcomes:
                        counts["done" if outcomes[index].ok else "failed"] += 1
                    elif handle.state in ("RUNNING", "COMPLETING"):
                        counts["running"] += 1
                    else:
                        counts["queued"] += 1
                line = "slurm: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                if line != last_line:
                    self.progress(line)
                    last_line = line
                if len(outcomes) < len(submitted):
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            waiting = [handle for index, handle in submitted.items() if index not in outcomes]
            if waiting and self.confirm_cancel():
                for handle in waiting:
                    handle.cancel(check=False)  # scancel
                self.progress(f"slurm: cancelled {len(waiting)} job(s); their points stay stale")
            raise
        return [outcomes[i] for i in range(len(tasks))]

    @staticmethod
    def _outcome(job: Job, handle, seconds: float) -> Outcome:
        state = handle.state
        try:
            outcome = handle.result()
        except Exception as error:  # the task raised, timed out, or was cancelled before it could record
            tail = _tail(handle.stderr() or "") or str(error)
            status = "timeout" if "TIMEOUT" in state else "cancelled" if "CANCEL" in state else "failed"
            outcome = Outcome(status, seconds, f"slurm job {handle.job_id} ({state}):\n{tail}")
            if (read_point(job.folder) or {}).get("status") in (None, "running"):
                settle_run(job.folder, status, outcome.error)  # the run in the folder agrees with the point
                write_point(job.folder, {"status": status, "ended": now_iso(), "error": outcome.error})
            return outcome
        if not outcome.ok and not outcome.error:
            outcome.error = _tail(handle.stderr() or "")
        return outcome


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


def make_executor(
    name: str,
    jobs: int = 1,
    folder: Path | None = None,
    settings: SlurmSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> LocalExecutor | SlurmExecutor:
    if name == "local":
        return LocalExecutor(jobs)
    if name == "slurm":
        return SlurmExecutor(folder or Path("runs") / "_slurm", settings, progress=progress)
    raise LabError(f"EXECUTOR={name!r} is unknown; use local or slurm.")
