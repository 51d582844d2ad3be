"""Resolve: every section's parameters, the measurements it presents, and its point's key and state.

    resolver = Resolver(plan, context, index_points())
    resolver.parameters(section)        what papermill passes: the profile's defaults that the notebook
                                        declares, DATA / DEVICE / MNIST / BUDGET from the command line,
                                        the section's own parameters, tag=<profile>
    resolver.needs(section, recorded)   the measurements its sections module says it presents
                                        (lablib.sections.registry), as far as the records allow now
    settle_needs(resolver, state, recorded)
                                        the same, into the state (invalid when its module cannot name them)
    resolver.point(section, needs)      its point's key, parts and state: complete (a complete point.json
                                        with the key), stale (none yet, or an earlier build's attempt
                                        failed or was stopped: it runs again), or this build's failure

Nothing runs here: the build measures (lablib.report.measure), then presents (lablib.report.present).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.data import NAMED_SOURCES
from lablib.core.errors import LabError
from lablib.report.plan import Plan, PlanError, Section
from lablib.report.points import (
    latest_complete,
    notebook_digest,
    point_key,
    presenting_digest,
    presenting_modules,
    read_point,
)

FAILED = ("failed", "timeout", "interrupted", "abandoned", "cancelled", "blocked", "invalid")
# The parts the environment's switches (lablib.core.switches, set by make gpu-check) turn off, as notebook
# parameters: section -> parameter -> the switches that set it False. P-2025-C8's and X-FAST's planners read
# the switches themselves (their compile modes).
SWITCHED = {
    "c10_latency": {"aoti": ("no_aoti", "no_compile")},
    "e2_efficient_blocks": {"use_compile": ("no_compile",), "time_cpu": ("no_cpu_compile",)},
}


def json_round_trip(value: Any) -> Any:
    """`value` as it reads back from point.json (tuples become lists, keys strings)."""
    import json

    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Context:
    """What every key of this build shares, and what the command line set."""

    defaults: Mapping[str, Any]  # the profile's defaults with DATA, DEVICE and tag=<profile> applied
    environment: str  # the environment lock
    device: str  # the device kind of this machine
    cuda: bool  # a GPU is usable
    core: str  # the core layer's code digest
    mnist: str | None = None  # MNIST=PATH for sections whose data is "mnist"
    force: bool = False  # FORCE=1: the selected sections' measurements and points run again in this build
    selected: frozenset[str] = frozenset()  # section names this build may run
    records_only: bool = False  # RECORDS=...: stitch what another machine measured, run nothing
    budgets: Mapping[str, float] = field(default_factory=dict)  # section -> budget_s (BUDGET split over E1's grids)


@dataclass
class SectionState:
    """One section in this build: its parameters, measurements and point."""

    section: Section
    parameters: dict[str, Any] = field(default_factory=dict)
    needs: Any = None  # lablib.sections.registry.Needs
    key: str | None = None
    key_parts: dict[str, Any] = field(default_factory=dict)
    # complete | stale | failed | timeout | interrupted | abandoned | cancelled | blocked | invalid | not built
    status: str = "stale"
    record: dict[str, Any] | None = None  # its point.json (the complete one, else the last attempt)
    error: str | None = None
    ran: bool = False  # its notebook was executed by this build
    measured: list[str] = field(default_factory=list)  # measurement keys this build measured for it
    selected: bool = False  # this build runs it (ONLY, the variant, and what they need)
    failed_measurements: list[dict[str, Any]] = field(default_factory=list)  # {label, status, error, log}

    @property
    def name(self) -> str:
        return self.section.name

    @property
    def label(self) -> str:
        """A point's label within its section: one point per section, so none."""
        return ""

    @property
    def requests(self) -> tuple:
        return tuple(self.needs.requests) if self.needs is not None else ()


class Resolver:
    """Queries over the plan, the presenters and the store of points; nothing runs here."""

    def __init__(self, plan: Plan, context: Context, index: dict[str, list[dict[str, Any]]]):
        self.plan, self.context, self.index = plan, context, index
        self.ran: set[str] = set()  # point keys executed by this build
        self._declared: dict[str, set[str]] = {}
        self._digests: dict[Path, str] = {}

    # --- parameters ------------------------------------------------------------------------------
    def declared(self, section: Section) -> set[str]:
        if section.name not in self._declared:
            import papermill

            try:
                self._declared[section.name] = set(papermill.inspect_notebook(str(section.notebook)))
            except Exception as error:  # a notebook papermill cannot read: this section fails, not the build
                raise PlanError(f"papermill cannot read {section.notebook.name}'s parameters: {error}") from None
        return self._declared[section.name]

    def parameters(self, section: Section) -> dict[str, Any]:
        """The parameters papermill passes (a PlanError when the plan passes one the notebook does not declare)."""
        declared = self.declared(section)
        undeclared = sorted(k for k in section.params if k not in declared)
        if undeclared:
            raise PlanError(
                f"the plan passes {', '.join(undeclared)}, which {section.notebook.name} does not declare "
                f"in its parameters cell (it declares: {', '.join(sorted(declared))}); fix the plan."
            )
        parameters = {k: v for k, v in self.context.defaults.items() if k in declared}
        parameters.update(section.params)
        if section.name in self.context.budgets and "budget_s" in declared:
            parameters["budget_s"] = float(self.context.budgets[section.name])
        parameters.update(switched_off(section.name, declared))
        if parameters.get("data") == "mnist" and self.context.mnist:
            parameters["data"] = self.context.mnist  # MNIST=PATH: the digits as an image folder
        if isinstance(parameters.get("data"), str) and parameters["data"] not in NAMED_SOURCES:
            parameters["data"] = str(Path(parameters["data"]).expanduser().resolve())
        return parameters

    # --- measurements ------------------------------------------------------------------------------
    def needs(self, state: SectionState, recorded):
        """The section's measurements as far as `recorded` allows to know them now."""
        from lablib.sections.registry import presenter

        return presenter(state.name).needs(state.parameters, recorded)

    def state(self, section: Section) -> SectionState:
        """A new state with the section's parameters (invalid when they cannot be made)."""
        state = SectionState(section, selected=section.name in self.context.selected)
        if not section.exists:
            state.status, state.error = "missing", f"{section.notebook} is not in this checkout"
            return state
        try:
            state.parameters = self.parameters(section)
        except PlanError as error:
            state.status, state.error = "invalid", str(error)
        return state

    # --- the point ---------------------------------------------------------------------------------
    def point(self, state: SectionState) -> SectionState:
        """Its point's key from its final measurements, and whether a complete point with that key exists."""
        from lablib.sections.registry import presenter

        section = state.section
        if section.notebook not in self._digests:
            self._digests[section.notebook] = notebook_digest(section.notebook)
        planner = presenter(section.name).measurements
        modules = presenting_modules(
            section.notebook, [planner.__module__.rsplit(".", 1)[-1]] if planner is not None else []
        )
        state.key_parts = {
            "notebook": self._digests[section.notebook],
            "parameters": {k: v for k, v in state.parameters.items() if k != "data"},
            "presenting": presenting_digest(modules),
            "core": self.context.core,
            "measurements": [request.key for request in state.requests],
            "environment": self.context.environment,
            "device": self.context.device,
        }
        state.key = point_key(state.key_parts)
        state.ran = state.key in self.ran
        complete = latest_complete(self.index, state.key)
        if complete is None and self.context.records_only:
            complete = self.measured_elsewhere(state)
        forced = self.context.force and section.name in self.context.selected and not state.ran
        if complete and not forced:
            state.status, state.record = "complete", complete
            return state
        attempts = self.index.get(state.key, [])
        if attempts and attempts[-1].get("status") in FAILED and state.ran and state.status not in FAILED:
            state.status, state.record, state.error = attempts[-1]["status"], attempts[-1], attempts[-1].get("error")
        elif state.status not in FAILED:
            state.status = "stale"  # not run yet, or an earlier build's attempt failed or was stopped: it runs again
        return state

    def recorded(self, key: str, folder: Path) -> None:
        """The point `key` ran into `folder`: its point.json joins the index."""
        self.ran.add(key)
        record = read_point(folder) or {"status": "failed", "error": "no point.json was written"}
        record["folder"] = str(folder)
        self.index.setdefault(key, []).append(record)

    def measured_elsewhere(self, state: SectionState) -> dict[str, Any] | None:
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


def settle_needs(resolver: Resolver, state: SectionState, recorded) -> bool:
    """`resolver.needs` into `state.needs`; False (the state invalid, with the error) when the section's module
    cannot name its measurements from its parameters."""
    try:
        state.needs = resolver.needs(state, recorded)
    except LabError as error:
        state.status, state.error = "invalid", str(error)
        return False
    return True


def switched_off(section: str, declared: set[str]) -> dict[str, Any]:
    """The section's parameters the environment's switches turn off (make gpu-check), as False."""
    from lablib.core.switches import switches

    now = switches()
    return {
        name: False
        for name, reasons in SWITCHED.get(section, {}).items()
        if name in declared and any(getattr(now, reason) for reason in reasons)
    }
