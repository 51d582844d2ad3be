"""Schedule: which points run, grouped for the executor, in plan order.

Points whose parameters are known before anything runs (fixed lists, in
consecutive sections) go to the executor as one group, so JOBS=N or a Slurm
array can run them side by side. A section that needs earlier results first
runs alone, round after round until nothing new is listed: C3's rule (each
point decides the next), best_of_grid (the grid, then the re-runs of its best
settings), and {best_of: c3_workers} references (C3 must be finished).
Exclusive (timing) sections are marked so, and the executor runs their points
alone. A failed point does not stop the others, and is not tried twice in one build.
"""

from __future__ import annotations

from lablib.report.estimate import Estimator
from lablib.report.executors import LocalExecutor, SlurmExecutor, Task
from lablib.report.job import Job, Outcome
from lablib.report.plan import Section
from lablib.report.points import new_point_folder
from lablib.report.progress import Progress
from lablib.report.resolve import PointState, Resolver


def needs_earlier_results(section: Section) -> bool:
    """A rule sweep, or a parameter that refers to another section's result."""
    swept = [v for values in section.sweep.values() if isinstance(values, list) for v in values]
    return section.rule is not None or any(isinstance(v, dict) for v in [*section.params.values(), *swept])


class Schedule:
    def __init__(
        self,
        resolver: Resolver,
        executor: LocalExecutor | SlurmExecutor,
        estimator: Estimator,
        progress: Progress,
    ):
        self.resolver, self.executor, self.estimator, self.progress = resolver, executor, estimator, progress

    def job(self, state: PointState) -> Job:
        section = state.section
        return Job(
            section.name,
            section.notebook,
            state.parameters,
            state.key,
            new_point_folder(section.store),
            section.timeout_s,
            state.label,
            record={
                "profile": self.resolver.plan.profile,
                "device_kind": self.resolver.context.device,
                "key_parts": state.key_parts,  # what the key hashes: a RECORDS build and the change appendix read it
            },
        )

    def todo(self, section: Section) -> list[PointState]:
        """The section's listed points that still have to run in this build."""
        return [s for s in self.resolver.points(section) if s.runnable and s.key not in self.resolver.ran]

    def run_group(self, states: list[PointState]) -> None:
        """Run points as one group on the executor; the resolver learns each result as it ends."""
        if not states:
            return
        tasks = [Task(self.job(s), s.section.exclusive) for s in states]
        predicted = {task.job.key: self.estimator.seconds(s) for task, s in zip(tasks, states)}

        def on_start(task: Task) -> None:
            self.progress.start(task.job.name)

        def on_end(task: Task, outcome: Outcome) -> None:
            self.resolver.recorded(task.job.key, task.job.folder)
            note = ""
            if self.executor.name == "slurm":
                note = " (slurm)"
            elif getattr(self.executor, "jobs", 1) > 1 and not task.exclusive:
                note = " (in parallel)"
            self.progress.finish(task.job.name, outcome, predicted[task.job.key], str(task.job.log), note)

        try:
            self.executor.run(tasks, on_start, on_end)
        finally:  # an interrupted build leaves no empty folders for the points it never started
            for task in tasks:
                if task.job.folder.is_dir() and not any(task.job.folder.iterdir()):
                    task.job.folder.rmdir()

    def run(self) -> None:
        """Every selected section's stale points, in plan order (see the module docstring)."""
        plan, selected = self.resolver.plan, self.resolver.context.selected
        group: list[PointState] = []
        for section in plan.sections:
            if section.name not in selected or not section.exists:
                continue
            if needs_earlier_results(section):
                self.run_group(group)
                group = []
                while todo := self.todo(section):
                    self.run_group(todo)
            else:
                group.extend(self.todo(section))
        self.run_group(group)
