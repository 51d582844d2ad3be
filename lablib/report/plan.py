"""The report plan: which notebooks, in which order, with which parameter points.

`report/plan.yaml` lists the report's parts and sections in report order. Each
section is one notebook with, per profile:

    params    fixed notebook parameters; a value may be a reference such as
              {best_of: c3_workers} (C3.2's best workers, resolved when the point runs)
    sweep     {parameter: [values]} -> one point per value (several parameters: their product);
              or a rule, whose points are made from the recorded ones:
              {workers: {rule: c3, max: 4}} -> C3's stop-when-no-gain rule, one point at a time
                  (lablib.sections.sweeps.c3_next_workers); alone in its sweep;
              {seed: {rule: best_of_grid, top: 2, seeds: 2, by: final_accuracy}} beside lists ->
                  the lists' grid at seed `base` (default 0), then, once the grid is recorded, its
                  `top` best settings by the result `by` (higher is better) again with `seeds`
                  more seeds (base+1, base+2, ...)
    timeout   per-point wall-clock limit, seconds or "90s" / "20m" / "3h"
    cost      how many of the profile's training runs one point costs (for the estimate)
    exclusive true for timing sections: with JOBS > 1 their points run alone

A section is named after its notebook; `name:` gives another name, so that one notebook can
serve two sections (E1 on MNIST and on CIFAR-10). Its points are recorded under the notebook's
name in the run store either way.

`notebooks:` (optional, relative to the plan file) is where the notebooks are;
the default is <repo>/notebooks. A `profiles:` mapping inside a section overrides those keys for one profile.
The top-level `profiles:` gives each profile's defaults (data, limits, epochs, ...),
which are passed only to notebooks that declare the parameter.
`load_plan` checks all of it and raises PlanError naming the bad entry.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT

SECTION_KEYS = {"notebook", "name", "id", "title", "params", "sweep", "timeout", "cost", "exclusive", "profiles"}
OVERRIDE_KEYS = {"params", "sweep", "timeout", "cost"}
PROFILE_KEYS = {"description", "lab_settings", "banner", "defaults", "timeout", "exclude"}
REFERENCE_KINDS = ("best_of",)
RULES = ("c3", "best_of_grid")
RULE_KEYS = {"c3": {"max", "step"}, "best_of_grid": {"top", "seeds", "by", "base"}}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


class PlanError(LabError):
    """The plan file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Rule:
    """C3's rule: workers 0, step, 2*step, ... until the data-loading time stops decreasing."""

    name: str = "c3"  # lablib.sections.sweeps.c3_next_workers
    max: int | None = None  # the largest value tried (None: the machine's cores)
    step: int = 4


@dataclass(frozen=True)
class BestOfGrid:
    """The grid of the section's lists at seed `base`; then its `top` best settings by the
    result `by` (higher is better; diverged points, which record none, never rank) re-run
    with `seeds` more values of the rule's parameter: base+1 ... base+seeds."""

    top: int
    seeds: int
    by: str = "final_accuracy"
    base: int = 0
    name: str = "best_of_grid"


@dataclass(frozen=True)
class Section:
    name: str  # unique in the plan; the notebook's stem unless the plan names it
    id: str  # the lab's numbering, e.g. "C3"
    title: str
    part: str  # the part of the report it belongs to
    notebook: Path
    params: Mapping[str, Any]  # fixed parameters (may hold references)
    sweep: Mapping[str, Any]  # parameter -> list of values, or -> Rule / BestOfGrid
    timeout_s: float
    cost: float
    exclusive: bool = False  # a timing section: with JOBS > 1 its points never share the machine

    @property
    def exists(self) -> bool:
        return self.notebook.is_file()

    @property
    def store(self) -> str:
        """The run-store section its points are recorded under: the notebook's stem."""
        return self.notebook.stem

    @property
    def rule(self) -> tuple[str, Rule | BestOfGrid] | None:
        for name, values in self.sweep.items():
            if isinstance(values, (Rule, BestOfGrid)):
                return name, values
        return None

    @property
    def swept(self) -> tuple[str, ...]:
        """The swept parameters, in plan order (a point's label shows these)."""
        return tuple(self.sweep)

    def static_points(self) -> list[dict[str, Any]]:
        """Every point's own parameters from the lists (their product); a best_of_grid rule's
        parameter is its base value here. C3's rule has no fixed points."""
        rule = self.rule
        if rule and isinstance(rule[1], Rule):
            raise PlanError(f"section {self.name}: C3's rule sweep has no fixed points")
        names = [n for n in self.sweep if isinstance(self.sweep[n], list)]
        combos = itertools.product(*(self.sweep[n] for n in names)) if names else [()]
        fixed = {rule[0]: rule[1].base} if rule else {}
        return [{**self.params, **dict(zip(names, combo)), **fixed} for combo in combos]


@dataclass(frozen=True)
class Plan:
    path: Path
    title: str
    profile: str
    description: str
    lab_settings: bool  # False: the title page says this is not the lab's settings
    banner: str
    defaults: Mapping[str, Any]
    sections: list[Section] = field(default_factory=list)
    excluded: frozenset[str] = frozenset()  # sections the profile leaves out (`exclude:`), by section name

    @property
    def parts(self) -> list[tuple[str, list[Section]]]:
        grouped: dict[str, list[Section]] = {}
        for section in self.sections:
            grouped.setdefault(section.part, []).append(section)
        return list(grouped.items())

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise PlanError(f"the plan has no section {name!r}; sections: {', '.join(s.name for s in self.sections)}")

    def select(self, only: str | list[str] | None) -> list[Section]:
        """Sections named by name or lab id (case-insensitive; an id selects every section that has
        it), in plan order; None/"" = all."""
        if not only:
            return list(self.sections)
        given = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
        wanted = {w.lower() for w in given}
        known = {s.name.lower() for s in self.sections} | {s.id.lower() for s in self.sections}
        unknown = [w for w in given if w.lower() not in known]
        if unknown:
            raise PlanError(
                f"ONLY names unknown section(s) {', '.join(unknown)}; known: "
                f"{', '.join(s.name for s in self.sections)} (or their ids "
                f"{', '.join(dict.fromkeys(s.id for s in self.sections))})."
            )
        return [s for s in self.sections if s.name.lower() in wanted or s.id.lower() in wanted]


def parse_duration(value: Any, where: str) -> float:
    """Seconds from 90, "90s", "20m"/"20min" or "3h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise PlanError(f"{where}: timeout {value!r} is not a duration; write seconds or e.g. '90s', '20m', '3h'.")
    scale = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


def _check_value(value: Any, where: str) -> Any:
    """Plain YAML scalars, or a reference {best_of: <section>}."""
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in REFERENCE_KINDS:
            raise PlanError(
                f"{where}: {dict(value)!r} is not a parameter value; a mapping must be a reference "
                f"like {{best_of: c3_workers}}."
            )
        return dict(value)
    if isinstance(value, (list, tuple)):
        raise PlanError(f"{where}: {value!r} is a list; lists of values belong under 'sweep'.")
    return value


def _check_sweep(sweep: Any, where: str) -> dict[str, Any]:
    if sweep is None:
        return {}
    if not isinstance(sweep, Mapping):
        raise PlanError(f"{where}: sweep must map a parameter to a list of values or to a rule, got {sweep!r}.")
    checked: dict[str, Any] = {}
    for name, values in sweep.items():
        spot = f"{where}.sweep.{name}"
        if isinstance(values, str) or isinstance(values, Mapping):
            checked[name] = _check_rule(values, spot)
        elif isinstance(values, list) and values:
            checked[name] = [_check_value(v, spot) for v in values]
        else:
            raise PlanError(f"{spot}: expected a non-empty list of values or a rule, got {values!r}.")
    rules = [v for v in checked.values() if isinstance(v, (Rule, BestOfGrid))]
    if len(rules) > 1:
        raise PlanError(f"{where}: a sweep has at most one rule, got {len(rules)}.")
    if rules and isinstance(rules[0], Rule) and len(checked) > 1:
        raise PlanError(f"{where}: C3's rule sweep cannot be combined with other swept parameters.")
    if rules and isinstance(rules[0], BestOfGrid) and len(checked) == 1:
        raise PlanError(f"{where}: a best_of_grid rule needs a grid: swept lists beside it, e.g. lr: [0.01, 0.1].")
    return checked


def _whole(spec: Mapping[str, Any], key: str, default: Any, spot: str, least: int = 1) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise PlanError(f"{spot}: {key} must be a whole number >= {least}, got {value!r}.")
    return value


def _check_rule(values: Any, spot: str) -> Rule | BestOfGrid:
    spec = {"rule": values} if isinstance(values, str) else dict(values)
    rule = str(spec.pop("rule", "")).removesuffix("_rule")
    if rule not in RULES or set(spec) - RULE_KEYS[rule]:
        raise PlanError(
            f"{spot}: {values!r} is not a known rule; write e.g. {{rule: c3, max: 4}} or "
            f"{{rule: best_of_grid, top: 2, seeds: 2}} (keys: c3: {', '.join(sorted(RULE_KEYS['c3']))}; "
            f"best_of_grid: {', '.join(sorted(RULE_KEYS['best_of_grid']))})."
        )
    if rule == "c3":
        limit = spec.get("max")
        return Rule("c3", None if limit is None else _whole(spec, "max", None, spot), _whole(spec, "step", 4, spot))
    by = spec.get("by", "final_accuracy")
    if not isinstance(by, str) or not by:
        raise PlanError(f"{spot}: by must name a recorded result such as final_accuracy, got {by!r}.")
    return BestOfGrid(
        top=_whole(spec, "top", None, spot),
        seeds=_whole(spec, "seeds", None, spot),
        by=by,
        base=_whole(spec, "base", 0, spot, least=0),
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PlanError(f"{where}: expected a mapping (name: value), got {value!r}.")
    return dict(value)


def load_plan(path: str | Path, profile: str, notebooks_dir: str | Path | None = None) -> Plan:
    """Read and check the plan, resolved for one profile."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise PlanError(f"cannot read the plan {path}: {error.strerror}; pass --plan PATH.") from None
    except yaml.YAMLError as error:
        raise PlanError(f"{path} is not valid YAML: {error}") from None
    raw = _mapping(raw, str(path))
    unknown = set(raw) - {"title", "profiles", "parts", "notebooks"}
    if unknown:
        raise PlanError(
            f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
            "expected title, notebooks, profiles, parts."
        )
    profiles = _mapping(raw.get("profiles"), f"{path}: profiles")
    if profile not in profiles:
        raise PlanError(f"profile {profile!r} is not in {path}; profiles: {', '.join(profiles) or 'none'}.")
    spec = _mapping(profiles[profile], f"profiles.{profile}")
    bad = set(spec) - PROFILE_KEYS
    if bad:
        raise PlanError(
            f"profiles.{profile}: unknown key(s) {', '.join(sorted(bad))}; expected {', '.join(sorted(PROFILE_KEYS))}."
        )
    defaults = {
        k: _check_value(v, f"profiles.{profile}.defaults.{k}")
        for k, v in _mapping(spec.get("defaults"), f"profiles.{profile}.defaults").items()
    }
    default_timeout = parse_duration(spec.get("timeout", "2h"), f"profiles.{profile}")
    excluded = set(spec.get("exclude") or [])
    left_out: set[str] = set()
    if notebooks_dir is None and raw.get("notebooks"):  # relative to the plan file
        notebooks_dir = path.resolve().parent / str(raw["notebooks"])
    notebooks = Path(notebooks_dir) if notebooks_dir else REPO_ROOT / "notebooks"

    sections: list[Section] = []
    parts = raw.get("parts")
    if not isinstance(parts, list) or not parts:
        raise PlanError(f"{path}: 'parts' must be a non-empty list of {{title, sections}}.")
    for p, part in enumerate(parts):
        part = _mapping(part, f"parts[{p}]")
        if not isinstance(part.get("title"), str) or not isinstance(part.get("sections"), list):
            raise PlanError(f"parts[{p}]: needs a 'title' (text) and a 'sections' list.")
        for s, entry in enumerate(part["sections"]):
            where = f"parts[{p}].sections[{s}]"
            entry = {"notebook": entry} if isinstance(entry, str) else _mapping(entry, where)
            stem = entry.get("notebook")
            if not isinstance(stem, str) or not re.fullmatch(r"[a-z0-9_]+", stem):
                raise PlanError(f"{where}: 'notebook' must be a notebook stem like c3_workers, got {stem!r}.")
            name = entry.get("name", stem)
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
                raise PlanError(f"{where}: 'name' must be lower-case letters, digits and _, got {name!r}.")
            where = f"{where} ({name})"
            bad = set(entry) - SECTION_KEYS
            if bad:
                raise PlanError(
                    f"{where}: unknown key(s) {', '.join(sorted(bad))}; expected {', '.join(sorted(SECTION_KEYS))}."
                )
            if name in {x.name for x in sections}:
                raise PlanError(f"{where}: section {name} appears twice in the plan.")
            overrides = _mapping(
                _mapping(entry.get("profiles"), f"{where}.profiles").get(profile), f"{where}.profiles.{profile}"
            )
            bad = set(overrides) - OVERRIDE_KEYS
            if bad:
                raise PlanError(
                    f"{where}.profiles.{profile}: unknown key(s) {', '.join(sorted(bad))}; "
                    f"expected {', '.join(sorted(OVERRIDE_KEYS))}."
                )
            if name in excluded or stem in excluded:
                left_out.add(name)
                continue
            merged = {k: entry.get(k) for k in OVERRIDE_KEYS} | {k: v for k, v in overrides.items()}
            params = {
                k: _check_value(v, f"{where}.params.{k}")
                for k, v in {
                    **_mapping(entry.get("params"), f"{where}.params"),
                    **_mapping(overrides.get("params"), f"{where}.params"),
                }.items()
            }
            sweep = _check_sweep(merged["sweep"], where)
            clash = set(sweep) & set(params)
            if clash:
                raise PlanError(f"{where}: {', '.join(sorted(clash))} is both a fixed parameter and swept.")
            cost = merged["cost"] if merged["cost"] is not None else 1.0
            if not isinstance(cost, (int, float)) or cost < 0:
                raise PlanError(f"{where}: cost must be a number >= 0, got {cost!r}.")
            sections.append(
                Section(
                    name=name,
                    id=str(entry.get("id") or name),
                    title=str(entry.get("title") or name),
                    part=part["title"],
                    notebook=notebooks / f"{stem}.ipynb",
                    params=params,
                    sweep=sweep,
                    timeout_s=parse_duration(merged["timeout"], where) if merged["timeout"] else default_timeout,
                    cost=float(cost),
                    exclusive=bool(entry.get("exclusive", False)),
                )
            )
    for section in sections:  # references must name a section of the plan
        values = [*section.params.values(), *(v for vs in section.sweep.values() if isinstance(vs, list) for v in vs)]
        for value in values:
            if isinstance(value, dict) and value["best_of"] == section.name:
                raise PlanError(f"section {section.name}: {{best_of: {section.name}}} refers to the section itself.")
            if isinstance(value, dict) and value["best_of"] not in {x.name for x in sections}:
                raise PlanError(
                    f"section {section.name}: {{best_of: {value['best_of']}}} names no section of the plan."
                )
            if isinstance(value, dict) and value["best_of"] != "c3_workers":
                raise PlanError(
                    f"section {section.name}: best_of is defined for c3_workers only, not {value['best_of']!r}."
                )
    return Plan(
        path=path,
        title=str(raw.get("title") or "Lab report"),
        profile=profile,
        description=str(spec.get("description") or ""),
        lab_settings=bool(spec.get("lab_settings", profile == "full")),
        banner=str(spec.get("banner") or ""),
        defaults=defaults,
        sections=sections,
        excluded=frozenset(left_out),
    )
