"""The report plan: which notebooks, in which order, with which parameters.

`report/plan.yaml` lists the report's parts and sections in report order. Each section is one
notebook, executed once per build with its parameters, presenting measurements that the build
measured first (lablib.core.store; which ones, its sections module says). Per section, per profile:

    params    fixed notebook parameters (a sweep is a parameter: C5's `optimizers`, E1's grid lists)
    needs     sections whose results this one uses (C4, C5, C6, P-2025-C4 use C3.2's best workers):
              built first, also when ONLY names only this one
    timeout   per measurement (one training, one latency table, ...) and per notebook execution,
              seconds or "90s" / "20m" / "3h"

A section is named after its notebook; `name:` gives another name, so that one notebook can
serve two sections (E1 on MNIST and on CIFAR-10). Its presenting records are kept under the
notebook's name in the run store either way.

`notebooks:` (optional, relative to the plan file) is where the notebooks are;
the default is <repo>/notebooks. A `profiles:` mapping inside a section overrides params and
timeout for one profile. The top-level `profiles:` gives each profile's defaults (data, limits,
epochs, ...), which are passed only to notebooks that declare the parameter, `exclude:` leaves
sections out of a profile, and `budget:` is the time E1's grids take together unless BUDGET says
otherwise (the full profile's: 20m; successive halving where a grid does not fit). `load_plan` checks
all of it and raises PlanError naming the bad entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT

SECTION_KEYS = {"notebook", "name", "id", "title", "params", "needs", "timeout", "profiles"}
OVERRIDE_KEYS = {"params", "timeout"}
PROFILE_KEYS = {"description", "lab_settings", "banner", "defaults", "timeout", "exclude", "budget"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


class PlanError(LabError):
    """The plan file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Section:
    name: str  # unique in the plan; the notebook's stem unless the plan names it
    id: str  # the lab's numbering, e.g. "C3"
    title: str
    part: str  # the part of the report it belongs to
    notebook: Path
    params: Mapping[str, Any]  # fixed notebook parameters
    timeout_s: float  # per measurement, and per notebook execution
    needs: tuple[str, ...] = ()  # sections built first (their results decide this one's measurements)

    @property
    def exists(self) -> bool:
        return self.notebook.is_file()

    @property
    def store(self) -> str:
        """The run-store section its presenting records are kept under: the notebook's stem."""
        return self.notebook.stem


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
    budget_s: float = 0.0  # the profile's `budget:`, the time E1's grids take together unless BUDGET says (0: none)

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

    def with_needs(self, names: list[str] | set[str]) -> list[str]:
        """`names` and every section they need (recursively), in plan order."""
        wanted, stack = set(), list(names)
        while stack:
            name = stack.pop()
            if name in wanted:
                continue
            wanted.add(name)
            stack.extend(self.section(name).needs)
        return [s.name for s in self.sections if s.name in wanted]


def parse_duration(value: Any, where: str, what: str = "timeout") -> float:
    """Seconds from 90, "90s", "20m"/"20min" or "3h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise PlanError(f"{where}: {what} {value!r} is not a duration; write seconds or e.g. '90s', '20m', '3h'.")
    scale = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


def _check_value(value: Any, where: str) -> Any:
    """Plain YAML scalars: a notebook parameter is an int, float, bool or text (a list is a comma-separated text)."""
    if isinstance(value, (Mapping, list, tuple)):
        raise PlanError(
            f"{where}: {value!r} is not a parameter value; parameters are numbers, booleans or text "
            '(a list of values is one comma-separated text, e.g. optimizers: "sgd,adam").'
        )
    return value


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
            params = {
                k: _check_value(v, f"{where}.params.{k}")
                for k, v in {
                    **_mapping(entry.get("params"), f"{where}.params"),
                    **_mapping(overrides.get("params"), f"{where}.params"),
                }.items()
            }
            needs = entry.get("needs") or []
            if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
                raise PlanError(f"{where}: needs must be a list of section names, got {needs!r}.")
            timeout = overrides.get("timeout", entry.get("timeout"))
            sections.append(
                Section(
                    name=name,
                    id=str(entry.get("id") or name),
                    title=str(entry.get("title") or name),
                    part=part["title"],
                    notebook=notebooks / f"{stem}.ipynb",
                    params=params,
                    timeout_s=parse_duration(timeout, where) if timeout else default_timeout,
                    needs=tuple(needs),
                )
            )
    names = [x.name for x in sections]
    for section in sections:  # needs name earlier sections of the plan (a profile may leave them out)
        for needed in section.needs:
            if needed == section.name:
                raise PlanError(f"section {section.name}: it needs itself.")
            if needed in left_out:
                continue
            if needed not in names:
                raise PlanError(f"section {section.name}: needs {needed!r}, which is no section of the plan.")
            if names.index(needed) > names.index(section.name):
                raise PlanError(f"section {section.name}: needs {needed}, which comes after it; order the plan.")
    sections = [
        s
        if not set(s.needs) & left_out
        else Section(**{**s.__dict__, "needs": tuple(n for n in s.needs if n not in left_out)})
        for s in sections
    ]
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
        budget_s=parse_duration(spec["budget"], f"profiles.{profile}", "budget") if spec.get("budget") else 0.0,
    )
