"""Lab variants: which of the plan's sections a report shows, in which order, numbered how.

    variants = load_variants(plan)          # report/variants.yaml, each variant checked against the plan
    variant = variants.get("2025")          # a VariantError listing the variants for an unknown one
    variants.get(None)                      # the default (2026), or `all` for a plan it does not fit
    variant.entries                         # Entry(number, section, title, question, points, ...)
    variant.renumber("C5", "c5_optimizers") # a headline part in 2026 numbering -> this variant's

The measurements are the plan's points either way: a variant only chooses and renumbers what is
stitched, so one training serves every variant that shows the section. `all` (from_plan) is every
section of the plan in plan order under its own id, with the question text of the first variant
that shows the section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lablib.core.paths import REPO_ROOT
from lablib.report.plan import Plan, PlanError

VARIANTS_FILE = REPO_ROOT / "report" / "variants.yaml"
FROM_PLAN_FALLBACK = "all"  # the variant that is the plan itself
ENTRY_FIELDS = {
    "number",
    "section",
    "title",
    "question",
    "points",
    "question_id",
    "from_heading",
    "until_heading",
    "parts",
}


class VariantError(PlanError):
    """report/variants.yaml is wrong, or LAB names no variant."""


@dataclass(frozen=True)
class Entry:
    number: str  # the heading's number in this variant: "C6"
    section: str  # the plan section's name: "c5_optimizers"
    title: str  # the heading's title
    part: str  # the variant's part the entry is filed under
    question: str = ""  # the lab's question, short
    points: int | None = None  # the grading, when known
    question_id: str = ""  # the at-a-glance row it answers (default: number)
    from_heading: str | None = None  # show only the notebook's cells from this Markdown heading ...
    until_heading: str | None = None  # ... or only those before it
    parts: tuple[str, ...] = ()  # the section's answers this entry shows (default: all of them)

    @property
    def anchor(self) -> str:
        """The entry's HTML id and LaTeX label (unique within a variant)."""
        return "sec-" + "".join(c if c.isalnum() else "-" for c in f"{self.section}-{self.number}")

    @property
    def heading(self) -> str:
        return f"# {self.number} · {self.title}"


@dataclass(frozen=True)
class Variant:
    name: str  # "2025"
    title: str
    entries: tuple[Entry, ...]
    lab_ids: dict[str, str] = field(default_factory=dict)  # section name -> its plan id (2026 numbering)

    @property
    def sections(self) -> list[str]:
        """The plan sections this variant shows (each once, in order)."""
        return list(dict.fromkeys(e.section for e in self.entries))

    def select(self, only: str | Sequence[str] | None) -> list[str]:
        """The plan sections ONLY names, in this variant's numbering (LAB=2025 ONLY=C4: the profiling
        section), by number, question id or section name, case-insensitive; None/"": every section shown."""
        if not only:
            return self.sections
        given = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
        chosen: list[str] = []
        for word in given:
            lowered = word.lower()
            found = [
                e.section
                for e in self.entries
                if lowered in (e.number.lower(), e.question_id.lower(), e.section.lower())
            ]
            if not found:
                numbers = ", ".join(dict.fromkeys(e.number for e in self.entries))
                raise VariantError(
                    f"ONLY={word!r}: the {self.name} variant has no section {word}; its sections are {numbers} "
                    f"(or their notebook names, e.g. {self.entries[0].section}); LAB=all has every section."
                )
            chosen.extend(found)
        return [name for name in self.sections if name in chosen]

    def number_of(self, section: str) -> str:
        """The section's number in this variant (its first entry), else its name."""
        return next((e.number for e in self.entries if e.section == section), section)

    def renumber(self, part: str, entry: Entry) -> str:
        """A question part in the plan's numbering ("C5", "C3.2", "P-2025-C8") in this variant's ("C6")."""
        lab_id = self.lab_ids.get(entry.section, "")
        target = entry.question_id or entry.number
        if entry.parts == (part,):  # the entry is this one answer of its section (Lab 3 Q2 is E2.2)
            return target
        if lab_id and (part == lab_id or part.startswith(lab_id + ".")):
            return target + part[len(lab_id) :]
        return target


@dataclass(frozen=True)
class Variants:
    default: str
    variants: dict[str, Variant]
    path: Path
    errors: dict[str, str] = field(default_factory=dict)  # variant -> why it does not fit this plan

    @property
    def names(self) -> list[str]:
        return [*self.variants, *(n for n in self.errors if n not in self.variants)]

    def get(self, name: str | None) -> Variant:
        """The variant `name`; None: the default one, or `all` for a plan the default does not fit (a test plan)."""
        if name is None or str(name) == "":
            name = self.default if self.default in self.variants else FROM_PLAN_FALLBACK
        name = str(name)
        if name in self.errors:
            raise VariantError(self.errors[name])
        if name not in self.variants:
            raise VariantError(
                f"LAB={name!r} is not a variant of the lab; the variants are: {', '.join(self.names)} "
                f"(defined in {self.path})."
            )
        return self.variants[name]


def _entry(raw: Any, where: str, part: str, plan: Plan) -> Entry:
    if not isinstance(raw, dict):
        raise VariantError(f"{where}: an entry is a mapping with number, section and question; got {raw!r}.")
    unknown = sorted(set(raw) - ENTRY_FIELDS)
    if unknown:
        raise VariantError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ENTRY_FIELDS))}."
        )
    for name in ("number", "section"):
        if not raw.get(name):
            raise VariantError(f"{where}: the entry {raw!r} has no {name}.")
    sections = {s.name: s for s in plan.sections}
    if raw["section"] not in sections:
        raise VariantError(
            f"{where}: section {raw['section']!r} is not in the plan {plan.path.name}; "
            f"the plan's sections are: {', '.join(sections)}."
        )
    points = raw.get("points")
    if points is not None and (not isinstance(points, int) or points < 0):
        raise VariantError(f"{where}: points {points!r} must be a whole number >= 0 (omit them when unknown).")
    section = sections[raw["section"]]
    return Entry(
        number=str(raw["number"]),
        section=section.name,
        title=str(raw.get("title") or section.title),
        part=part,
        question=str(raw.get("question") or ""),
        points=points,
        question_id=str(raw.get("question_id") or raw["number"]),
        from_heading=raw.get("from_heading"),
        until_heading=raw.get("until_heading"),
        parts=tuple(str(p) for p in raw.get("parts") or ()),
    )


def load_variants(plan: Plan, path: Path | str | None = None) -> Variants:
    """Every variant of `path` (default report/variants.yaml), each checked against the plan."""
    path = Path(path or VARIANTS_FILE)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise VariantError(f"cannot read the lab variants {path}: {error}") from None
    listed = raw.get("variants")
    if not isinstance(listed, dict) or not listed:
        raise VariantError(f"{path}: no `variants:` mapping (name -> title and parts).")
    lab_ids = {s.name: s.id for s in plan.sections}
    variants: dict[str, Variant] = {}
    errors: dict[str, str] = {}
    questions: dict[str, tuple[str, int | None]] = {}  # section -> the first variant's question and points
    for name, spec in listed.items():
        name = str(name)
        if not isinstance(spec, dict):
            raise VariantError(f"{path}: variant {name!r} must be a mapping with title and parts.")
        if spec.get("from_plan"):
            continue
        try:
            entries = _entries(name, spec, path, plan)
        except VariantError as error:  # a variant that does not fit this plan is an error once it is asked for
            errors[name] = str(error)
            continue
        for entry in entries:
            if entry.section not in questions or (questions[entry.section][1] is None and entry.points):
                questions[entry.section] = (entry.question, entry.points)
        variants[name] = Variant(name, str(spec.get("title") or plan.title), tuple(entries), lab_ids)
    for name, spec in listed.items():
        if isinstance(spec, dict) and spec.get("from_plan"):
            entries = []
            for s in plan.sections:
                question, points = questions.get(s.name, ("", None))
                entries.append(Entry(s.id, s.name, s.title, s.part, question, points, s.id))
            variants[str(name)] = Variant(str(name), str(spec.get("title") or plan.title), tuple(entries), lab_ids)
    variants = {str(n): variants[str(n)] for n in listed if str(n) in variants}
    default = str(raw.get("default") or next(iter(listed)))
    if default not in variants and default not in errors:
        raise VariantError(f"{path}: default {default!r} is not one of the variants {', '.join(map(str, listed))}.")
    if FROM_PLAN_FALLBACK not in variants:
        raise VariantError(
            f"{path}: no `{FROM_PLAN_FALLBACK}: {{from_plan: true}}` variant (every section of the plan)."
        )
    return Variants(default, variants, path, errors)


def _entries(name: str, spec: dict[str, Any], path: Path, plan: Plan) -> list[Entry]:
    entries = []
    for p, part in enumerate(spec.get("parts") or []):
        for e, item in enumerate(part.get("entries") or []):
            where = f"{path.name}: variant {name!r}, part {p + 1}, entry {e + 1}"
            if isinstance(item, dict) and item.get("section") in plan.excluded:
                continue  # the profile leaves this section out (the gpu profile: timing sections only)
            entries.append(_entry(item, where, str(part.get("title") or ""), plan))
    if not entries:
        raise VariantError(f"{path}: variant {name!r} lists no entries.")
    numbers = [e.number for e in entries]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        raise VariantError(f"{path}: variant {name!r} numbers several entries {', '.join(twice)}.")
    return entries
