"""A notebook's parameters as papermill passed them: every name declared, every value of its type.

papermill writes the values it is given (`-p workers 8`, `-f params.yaml`) into a
cell tagged `injected-parameters`, placed right after the notebook's `parameters`
cell, and only warns about a name the notebook does not declare. A misspelt name
(`-p wrokers 8`) would then be ignored and the default measured, under a complete
record. So the preamble reads the kernel's input history (IPython's `In`): the
injected cell (it starts with papermill's "# Parameters" comment) must assign only
names that the cell before it declares, each with a value of the declared type.
Without an injected cell (JupyterLab, nbval, a plain run) there is nothing to check.
A list parameter is a comma-separated string (`-p modes eager,default`); parse_names reads one into names.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from lablib.core.errors import ConfigError

INJECTED_HEADER = "# Parameters"  # papermill's comment at the top of the cell it injects
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def declared_parameters(source: str) -> dict[str, str | None]:
    """Names a `parameters` cell assigns, with their annotation's type name (None when unannotated)."""
    found: dict[str, str | None] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node.annotation.id if isinstance(node.annotation, ast.Name) else None
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, None)
    return found


def injected_values(source: str) -> dict[str, Any]:
    """The names and literal values of papermill's injected cell."""
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = ast.unparse(node.value)
    return values


def _fits(value: Any, type_name: str | None) -> bool:
    expected = _TYPES.get(type_name or "")
    if expected is None:
        return True
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_parameters(declared: Mapping[str, str | None], given: Mapping[str, Any]) -> None:
    """Raise ConfigError for a given name that is not declared, or a value not of its declared type."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)}: this notebook does not declare "
            f"{'it' if len(unknown) == 1 else 'them'}, so the value would be ignored; its parameters are "
            f"{', '.join(declared)} (papermill --help-notebook lists them)."
        )
    for name, value in given.items():
        if not _fits(value, declared[name]):
            raise ConfigError(
                f"parameter {name}={value!r} has type {type(value).__name__}; this notebook expects "
                f"{declared[name]} (e.g. -p {name} {_example(declared[name])})."
            )


def _example(type_name: str | None) -> str:
    return {"int": "4", "float": "0.1", "bool": "True", "str": "text"}.get(type_name or "", "VALUE")


def parse_names(text: Any, name: str, known: Sequence[str], hint: str) -> list[str]:
    """'Eager, default,eager' -> ['eager', 'default']: the names of a comma-separated list parameter, lower-cased,
    each once, in the order given; none, or one not in `known`, is an error naming the parameter, ending in `hint`."""
    names = [item.strip().lower() for item in str(text).split(",") if item.strip()]
    if not names or any(item not in known for item in names):
        raise ConfigError(f"{name}={text!r}: expected a comma-separated list of {', '.join(known)} {hint}.")
    return list(dict.fromkeys(names))


def injected_cells(history: Sequence[str]) -> tuple[str, str] | None:
    """(parameters cell, injected cell) from a kernel's input history, or None when nothing was injected."""
    for index, source in enumerate(history):
        if index > 0 and source.lstrip().startswith(INJECTED_HEADER):
            return history[index - 1], source
    return None


def check_namespace(namespace: Mapping[str, Any]) -> None:
    """Check papermill's injected parameters against the declared ones, from the notebook's globals."""
    history = namespace.get("In") or namespace.get("_ih")
    if not isinstance(history, Sequence):
        return
    cells = injected_cells(list(history))
    if cells is None:
        return
    check_parameters(declared_parameters(cells[0]), injected_values(cells[1]))
