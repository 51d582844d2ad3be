"""Resolve: every point of the plan for this build, with its key and state. Nothing runs here.

For one section, `Resolver.points(section)` lists the points that can be known
from the run store now:

- a point's parameters: the profile's defaults that the notebook declares, the
  command line's DATA / DEVICE / MNIST, the section's own parameters, and
  {best_of: c3_workers} resolved to C3.2's best worker count;
- its label (its swept parameters), its key (lablib.report.points.point_key)
  and its state: complete (a complete point.json with the key), stale (none, or
  FORCE), the last attempt's failure, or invalid / unresolved when it cannot run;
- rule sweeps list what the records allow: C3's walk up to its first point that
  is not complete; best_of_grid the grid, and the re-runs of the grid's best
  settings once every grid point is complete.

The schedule runs what is stale, tells the resolver (`recorded`), and asks again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.data import NAMED_SOURCES
from lablib.report.plan import BestOfGrid, Plan, Rule, Section
from lablib.report.points import (
    data_fingerprint,
    latest_complete,
    notebook_digest,
    point_key,
    read_point,
    results_of,
)


def json_round_trip(value: Any) -> Any:
    """`value` as it reads back from point.json (tuples become lists, keys strings)."""
    import json

    return json.loads(json.dumps(value, default=str))


FAILED = ("failed", "timeout", "interrupted", "abandoned", "cancelled", "unresolved", "invalid")


@dataclass
class PointState:
    section: Section
    label: str
    parameters: dict[str, Any] = field(default_factory=dict)  # what papermill passes
    key: str | None = None
    # complete | stale | failed | timeout | interrupted | abandoned | cancelled | unresolved | invalid
    status: str = "stale"
    record: dict[str, Any] | None = None  # its point.json (the complete one, else the last attempt)
    error: str | None = None
    ran: bool = False  # executed by this build
    own: dict[str, Any] = field(default_factory=dict)  # the plan's parameters of this point, before defaults
    key_parts: dict[str, Any] = field(default_factory=dict)  # what the key hashes, recorded in point.json

    @property
    def name(self) -> str:
        return f"{self.section.name} {self.label}".strip()

    @property
    def runnable(self) -> bool:
        """Not complete, and nothing stops it from running (invalid and unresolved points cannot)."""
        return self.status not in ("complete", "invalid", "unresolved")


@dataclass(frozen=True)
class Context:
    """What every key of this build shares, and what the command line set."""

    defaults: Mapping[str, Any]  # the profile's defaults with DATA, DEVICE and tag=<profile> applied
    lablib: str  # lablib_digest()
    environment: str  # the environment lock
    device: str  # device_kind()
    cuda: bool  # a GPU is visible
    mnist: str | None = None  # MNIST=PATH for sections whose data is "mnist"
    force: bool = False  # FORCE=1: the selected points run again once in this build
    selected: frozenset[str] = frozenset()  # section names this build may run
    records_only: bool = False  # RECORDS=...: stitch what another machine measured, run nothing


class Resolver:
    """Queries over the plan and the store of points; `recorded` adds what the build just ran."""

    def __init__(self, plan: Plan, context: Context, index: dict[str, list[dict[str, Any]]]):
        self.plan, self.context, self.index = plan, context, index
        self.ran: set[str] = set()  # keys executed by this build
        self._declared: dict[str, set[str]] = {}
        self._digests: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}

    # --- what the build ran ----------------------------------------------------------------
    def recorded(self, key: str, folder: Path) -> None:
        """The point `key` ran into `folder`: its point.json joins the index."""
        self.ran.add(key)
        record = read_point(folder) or {"status": "failed", "error": "no point.json was written"}
        record["folder"] = str(folder)
        self.index.setdefault(key, []).append(record)

    # --- parts of a key ----------------------------------------------------------------------
    def declared(self, section: Section) -> set[str]:
        if section.name not in self._declared:
            import papermill

            self._declared[section.name] = set(papermill.inspect_notebook(str(section.notebook)))
        return self._declared[section.name]

    def fingerprint(self, data: Any) -> str:
        data = str(data)
        if data not in self._fingerprints:
            self._fingerprints[data] = data_fingerprint(data)
        return self._fingerprints[data]

    def resolved_device(self, parameters: Mapping[str, Any]) -> str:
        wanted = str(parameters.get("device", "auto"))
        return "cuda" if self.context.cuda and wanted in ("auto", "cuda") else "cpu"

    def best_workers(self, parameters: Mapping[str, Any]) -> int | None:
        """C3.2's best workers: the fastest complete C3 point of the plan now, else from the records."""
        from lablib.sections.sweeps import c3_best_workers

        rows = []
        sections = [s for s in self.plan.sections if s.name == "c3_workers" and s.exists]
        for state in self.points(sections[0]) if sections else []:
            mean = results_of(state.record).get("epoch_s_mean") if state.status == "complete" else None
            if mean is not None:
                rows.append((float(mean), int(state.parameters["workers"])))
        if rows:
            return min(rows)[1]
        found = c3_best_workers(
            self.plan.profile, self.fingerprint(parameters.get("data", "cifar10")), self.resolved_device(parameters)
        )
        return None if found is None else found[0]

    # --- one point -----------------------------------------------------------------------------
    def point(self, section: Section, own: dict[str, Any]) -> PointState:
        """The point with the plan's parameters `own`: its parameters, key and state."""
        label = " ".join(f"{k}={own[k]}" for k in section.swept if k in own and not isinstance(own[k], dict))
        state = PointState(section, label, own=dict(own))
        try:
            declared = self.declared(section)
        except Exception as error:  # a notebook papermill cannot read: this section fails, not the build
            state.status = "invalid"
            state.error = f"papermill cannot read {section.notebook.name}'s parameters: {error}"
            return state
        undeclared = sorted(k for k in own if k not in declared)
        if undeclared:
            state.status = "invalid"
            state.error = (
                f"the plan passes {', '.join(undeclared)}, which {section.notebook.name} does not declare "
                f"in its parameters cell (it declares: {', '.join(sorted(declared))}); fix the plan."
            )
            return state
        parameters = {k: v for k, v in self.context.defaults.items() if k in declared}
        parameters.update({k: v for k, v in own.items() if not isinstance(v, dict)})
        state.parameters = parameters
        for name, value in own.items():
            if isinstance(value, dict):  # {best_of: c3_workers}
                best = self.best_workers(parameters)
                if best is None:
                    state.status = "unresolved"
                    state.error = (
                        f"{name}: C3.2's best worker count is not known: no complete c3_workers run for profile "
                        f"{self.plan.profile!r}, this data and device {self.resolved_device(parameters)}; "
                        "build C3 first (make report ONLY=c3_workers)."
                    )
                    return state
                parameters[name] = best
                state.label = f"{state.label} {name}={best}".strip()
        if parameters.get("data") == "mnist" and self.context.mnist:
            parameters["data"] = self.context.mnist  # MNIST=PATH: the digits as an image folder
        if isinstance(parameters.get("data"), str) and parameters["data"] not in NAMED_SOURCES:
            parameters["data"] = str(Path(parameters["data"]).expanduser().resolve())
        if section.notebook not in self._digests:
            self._digests[section.notebook] = notebook_digest(section.notebook)
        state.key_parts = {
            "notebook": self._digests[section.notebook],
            "parameters": {k: v for k, v in parameters.items() if k != "data"},
            "lablib": self.context.lablib,
            "data": self.fingerprint(parameters["data"]) if "data" in parameters else "no data",
            "environment": self.context.environment,
            "device": self.context.device,
        }
        state.key = point_key(**state.key_parts)
        state.ran = state.key in self.ran
        complete = latest_complete(self.index, state.key)
        if complete is None and self.context.records_only:
            complete = self.measured_elsewhere(state)
        forced = self.context.force and section.name in self.context.selected and not state.ran
        if complete and not forced:
            state.status, state.record = "complete", complete
            return state
        attempts = self.index.get(state.key, [])
        if attempts and attempts[-1].get("status") in FAILED and not forced:
            state.status, state.record, state.error = attempts[-1]["status"], attempts[-1], attempts[-1].get("error")
        return state

    def measured_elsewhere(self, state: PointState) -> dict[str, Any] | None:
        """RECORDS mode: the newest complete point of this section, notebook and parameters (the data path
        aside), measured on any machine and environment; None when the records hold none."""
        found = [
            point
            for attempts in self.index.values()
            for point in attempts
            if point.get("status") == "complete"
            and point.get("section") == state.section.name
            and (point.get("key_parts") or {}).get("notebook") == state.key_parts["notebook"]
            and (point.get("key_parts") or {}).get("parameters") == json_round_trip(state.key_parts["parameters"])
            and Path(point["folder"], "notebook.ipynb").is_file()
        ]
        return max(found, key=lambda p: p.get("ended") or "") if found else None

    # --- one section -------------------------------------------------------------------------
    def points(self, section: Section) -> list[PointState]:
        """Every point of the section that the records allow to list now, in plan order."""
        if not section.exists:
            return []
        rule = section.rule
        if rule is None:
            return [self.point(section, own) for own in section.static_points()]
        name, spec = rule
        if isinstance(spec, Rule):
            return self._c3_walk(section, name, spec)
        return self._best_of_grid(section, name, spec)

    def more_possible(self, section: Section) -> int:
        """How many points a rule sweep may still add once the listed ones are recorded (for the estimate)."""
        rule = section.rule
        if rule is None or not section.exists:
            return 0
        listed = self.points(section)
        name, spec = rule
        if isinstance(spec, BestOfGrid):
            grid = len(section.static_points())
            return spec.top * spec.seeds if len(listed) == grid else 0
        from lablib.sections.sweeps import c3_worker_candidates

        last = listed[-1] if listed else None
        if last is None or last.status != "stale":
            return 0
        return len([c for c in c3_worker_candidates(self._c3_limit(spec), spec.step) if c > last.own[name]])

    @staticmethod
    def _c3_limit(spec: Rule) -> int:
        cores = os.cpu_count() or 1
        return min(spec.max, cores) if spec.max else cores

    def _c3_walk(self, section: Section, name: str, spec: Rule) -> list[PointState]:
        """C3's rule: the next worker count from the data-loading times measured so far."""
        from lablib.sections.sweeps import c3_next_workers

        measured: dict[int, float] = {}
        states: list[PointState] = []
        while (value := c3_next_workers(measured, self._c3_limit(spec), spec.step)) is not None:
            state = self.point(section, {**section.params, name: value})
            states.append(state)
            if state.status != "complete":
                break
            result = results_of(state.record).get("data_s_total")
            if result is None:
                states.append(_no_result(section, name, value, "data_s_total", "lablib.sections.sweeps"))
                break
            measured[value] = float(result)
        return states

    def _best_of_grid(self, section: Section, name: str, spec: BestOfGrid) -> list[PointState]:
        """The grid; once all of it is complete, its best settings again with more seeds."""
        grid = [self.point(section, own) for own in section.static_points()]
        if any(state.status != "complete" for state in grid):
            return grid
        ranked = []
        for order, state in enumerate(grid):
            results = results_of(state.record)
            if spec.by not in results:
                return [*grid, _no_result(section, name, state.own[name], spec.by, section.notebook.name)]
            value = results[spec.by]
            if isinstance(value, (int, float)) and math.isfinite(value):  # diverged points record none
                ranked.append((-float(value), order, state))
        best = [state for _, _, state in sorted(ranked, key=lambda row: row[:2])[: spec.top]]
        reruns = [
            self.point(section, {**state.own, name: spec.base + extra})
            for state in best
            for extra in range(1, spec.seeds + 1)
        ]
        return [*grid, *reruns]


def _no_result(section: Section, name: str, value: Any, result: str, where: str) -> PointState:
    return PointState(
        section,
        f"{name} rule",
        status="failed",
        error=(
            f"the {name}={value} run recorded no {result} result, so the plan's rule cannot choose the next "
            f"points; the notebook must log_results({result}=...) (see {where})."
        ),
    )
