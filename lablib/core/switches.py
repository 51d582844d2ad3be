"""Parts of the lab left out on purpose, from the environment.

    LABLIB_NO_CPU_COMPILE=1    no Inductor compile for the CPU: compiled CPU timings are not measured

`switches()` reads them; a value that is not 1/0/true/false is a ConfigError naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lablib.core.errors import ConfigError

NO_CPU_COMPILE = "LABLIB_NO_CPU_COMPILE"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Switches:
    no_cpu_compile: bool = False  # no torch.compile for the CPU (no C++ compiler, or no time for its compiles)


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={env[name]!r} is not a switch; use {name}=1 to turn the part off, or leave it unset.")


def switches(env: Mapping[str, str] | None = None) -> Switches:
    """The switches set in `env` (default: this process's environment)."""
    env = os.environ if env is None else env
    return Switches(no_cpu_compile=_flag(env, NO_CPU_COMPILE))
