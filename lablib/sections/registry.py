"""What each section presents, registered by the module that presents it.

The list of sections lives in report/plan.yaml (and the lab variants in report/variants.yaml); a
sections module registers, for each section it presents, a Presenter under the plan's name:

    PRESENTS = (
        Presenter("c1_training", parts=("C1",), measurements=c1_measurements, headlines=c1_headlines),
        ...
    )

- `measurements(params, recorded)` -> Needs: the measurements the section presents for these notebook
  parameters, as far as the records allow to know them now (`recorded(request)` is the store's lookup,
  or the dry run's prediction). A rule that needs results first (C3's stop-when-no-gain walk, E1's
  re-runs of its best settings) lists the next requests once those are recorded. The notebook and
  the report's build ask the same function, so they always agree on what is measured.
- `headlines(runs)` -> the one-line answers from the section's presenting record(s).
- `qualifier`: the setting a reference figure's "measure:value" selects (lablib.sections.context).
- `walks`: its measurements are listed one at a time, each decided by the records of those before it
  (E1's successive halving). The build measures such a walk in one measuring job, which plans the next
  measurement itself after each (lablib.report.measure.walk_job): one process start, and the imports,
  the data on the device and the compiled code kept, rather than a job per measurement.
- `data`: the data its measurements may train on (the lab's sections: CIFAR-10-like colour images; E1 also
  MNIST's digits). `needs` refuses any other source in one line before anything is planned or trained, so
  MNIST given to a CIFAR-10 section never trains a small CNN in silence.

`presenters()` finds every module of this package that has PRESENTS; tests/test_layers.py checks that
the plan's sections and the registered ones are the same.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lablib.core.data import COLOUR_32, DataKind, require_kind
from lablib.core.errors import LabError
from lablib.core.store import Measured, Request

Recorded = Callable[[Request], Measured | None]


@dataclass(frozen=True)
class Needs:
    """The measurements a section presents (in the order it shows them), and how choices were made."""

    requests: tuple[Request, ...] = ()
    notes: tuple[str, ...] = ()  # sentences for the reader: "4 workers: C3.2's best runtime (13.9 s per epoch)"
    waiting: str = ""  # why more requests may follow once these are recorded ("" when the list is final)

    def __add__(self, other: Needs) -> Needs:
        return Needs(self.requests + other.requests, self.notes + other.notes, self.waiting or other.waiting)


NOTHING = Needs()


@dataclass(frozen=True)
class Presenter:
    section: str  # the plan's section name
    parts: tuple[str, ...]  # the question parts its answers cover, in the plan's numbering (C3.1, C3.2, ...)
    measurements: Callable[[Mapping[str, Any], Recorded], Needs] | None = None
    headlines: Callable[..., list] | None = None
    qualifier: str | None = None  # the swept setting a reference figure's ":value" selects
    extra: Mapping[str, Any] = field(default_factory=dict)
    data: tuple[DataKind, ...] = (COLOUR_32,)  # the data its measurements may train on
    walks: bool = False  # its measurements follow one another from the records: measured in one job

    def needs(self, params: Mapping[str, Any], recorded: Recorded) -> Needs:
        if self.measurements is None:
            return NOTHING
        require_kind(str(params.get("data", "cifar10")), self.data, self.section)
        return self.measurements(params, recorded)


@lru_cache(maxsize=1)
def presenters() -> dict[str, Presenter]:
    """Every registered Presenter by section name (each module of lablib.sections with PRESENTS)."""
    import lablib.sections as package

    found: dict[str, Presenter] = {}
    for module in pkgutil.iter_modules(package.__path__):
        imported = importlib.import_module(f"{package.__name__}.{module.name}")
        for presenter in getattr(imported, "PRESENTS", ()):
            if presenter.section in found:
                raise LabError(f"section {presenter.section} is registered twice (lablib.sections.{module.name}).")
            found[presenter.section] = presenter
    return found


def presenter(section: str) -> Presenter:
    known = presenters()
    if section not in known:
        raise LabError(
            f"no sections module presents {section!r}; registered: {', '.join(sorted(known))} "
            "(a module of lablib.sections registers it in its PRESENTS)."
        )
    return known[section]
