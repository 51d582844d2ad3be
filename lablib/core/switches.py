"""Parts of the lab left out on purpose, from the environment: what `make gpu-check` turns off.

`make gpu-check` plans its steps against a time budget and a preflight (tools/gpu_budget.py) and sets,
for each step it starts:

    LABLIB_NO_COMPILE=1        no torch.compile / Triton / Inductor at all (no compiler, no Python headers)
    LABLIB_NO_AOTI=1           no AOTInductor (no CUDA toolkit, or no time for its compile)
    LABLIB_NO_CPU_COMPILE=1    no Inductor compile for the CPU beside the GPU (no time for it)
    LABLIB_COMPILE_MODES=eager,default,reduce-overhead   the torch.compile modes to measure (default: all)

`switches()` reads them; a value that is not 1/0/true/false, or an unknown mode, is a ConfigError
naming the variable. The report runner turns them into the notebooks' parameters before a point's
key is made (so a point run without a part is never taken for one run with it): C10 `aoti=False`
(NO_AOTI or NO_COMPILE), X-FAST and E2 `use_compile=False` (NO_COMPILE), E2 `time_cpu=False`
(NO_CPU_COMPILE), and P-2025-C8's compile_mode sweep filtered by `Switches.modes`. The core
knows no section: the mapping lives with the runner.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lablib.core.errors import ConfigError

NO_COMPILE = "LABLIB_NO_COMPILE"
NO_AOTI = "LABLIB_NO_AOTI"
NO_CPU_COMPILE = "LABLIB_NO_CPU_COMPILE"
COMPILE_MODES_ENV = "LABLIB_COMPILE_MODES"
COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune")  # torch.compile's modes (eager: none)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Switches:
    no_compile: bool = False
    no_aoti: bool = False
    no_cpu_compile: bool = False
    compile_modes: tuple[str, ...] | None = None  # None: every mode

    def modes(self, values: Iterable[str]) -> list[str]:
        """A compile-mode sweep with the modes turned off left out (eager only without compile)."""
        allowed = ("eager",) if self.no_compile else self.compile_modes
        return [mode for mode in values if allowed is None or mode in allowed]


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
    modes = None
    if env.get(COMPILE_MODES_ENV, "").strip():
        modes = tuple(m.strip() for m in env[COMPILE_MODES_ENV].split(",") if m.strip())
        unknown = [m for m in modes if m not in COMPILE_MODES]
        if unknown:
            raise ConfigError(
                f"{COMPILE_MODES_ENV}={env[COMPILE_MODES_ENV]!r} names {', '.join(unknown)}; "
                f"use a comma-separated list of {', '.join(COMPILE_MODES)}."
            )
    return Switches(_flag(env, NO_COMPILE), _flag(env, NO_AOTI), _flag(env, NO_CPU_COMPILE), modes)
