"""`make gpu-check`'s time budget: which steps start, with which parts, and each started step's hard limit.

    python3 tools/gpu_budget.py seconds -- 8m                 480 (a bad value: one line, exit status 2)
    python3 tools/gpu_budget.py plan --budget 480 --device cuda --preflight FILE [--sections C2,C3] [--skip x-fast]
    python3 tools/gpu_budget.py step report-C10 --budget 480 --elapsed 200 --device cuda --preflight FILE [...]

The costs are tools/gpu_check_costs.json: per step a base cost plus its parts' costs (compiles
counted from the file's compile costs), each marked measured or estimated there. Steps go in order
of value (pytest -m cuda, bench, X-FAST, the report's sections, the compile modes); `step` is asked
before each step starts, with the seconds elapsed since the check started (what is left is the
budget less those and the records' reserve), and prints shell assignments for gpu_check.sh:

    STEP_RUN=1 | 0            0: skipped, STEP_NOTE says why (its estimate against what is left)
    STEP_ESTIMATE, STEP_LIMIT seconds; the limit is the estimate with the margin, capped by what is left
                              (LIMIT_PYTEST ... LIMIT_COMPILE, when set, replace the limit)
    STEP_ENV                  the switches for the step's process (lablib.core.switches)
    STEP_NOTE                 the parts left out and why

A part needing something the preflight turned off (`python -m lablib info --preflight --json FILE`)
is left out, and a step needing it is skipped, so nothing fails deep inside Triton. An optional part
(AOTInductor, the CPU compile timings, max-autotune, the compiled CUDA test) runs only when it fits
beside the required parts of every later step that fits. Standard library only: the node's Python.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

COSTS = Path(__file__).resolve().with_name("gpu_check_costs.json")
DEVICES = ("cuda", "cpu")
SECTIONS = "C2,C3,C4,C5,C7,C10,E2"  # the report's timing sections, in plan order (C4 and C5 use C3's best)
FEATURE_WORDS = {
    "compile": "torch.compile",
    "aoti": "AOTInductor",
    "notebooks": "notebook execution",
    "records": "recording",
    "cuda": "the GPU",
}


class BudgetError(Exception):
    """A budget, a step list or a cost file that cannot be used; the message names it and what to do."""


def seconds(text: str, name: str = "GPU_CHECK_BUDGET") -> int:
    """480 from "480", "480s", "8m", "8min", "1.5h" or "1m30s"; a BudgetError names a bad value."""
    value = text.strip().lower()
    units = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)?", value)
    if not value or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)?", "", value).strip():
        raise BudgetError(f"{name}={text!r} is not a duration; give seconds (480 or 480s) or minutes (8m).")
    total = sum(float(number) * units[unit or "s"] for number, unit in parts)
    if total < 1:
        raise BudgetError(f"{name}={text!r} is less than a second; give at least 1s (e.g. {name}=8m).")
    return int(total)


@dataclass(frozen=True)
class Part:
    name: str
    seconds: float  # on this device, its compiles included
    needs: tuple[str, ...]  # features (lablib.core.preflight.FEATURES) it cannot run without
    optional: bool  # True: only when the budget allows
    off: dict[str, str]  # the switches set when it is left out
    mode: str | None = None  # a compile mode of the compile step


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    base: float
    needs: tuple[str, ...]
    parts: tuple[Part, ...]
    limit_variable: str  # LIMIT_PYTEST, ...: replaces the hard limit when set
    modes_env: str | None = None  # the compile step: its modes go in this variable
    base_modes: tuple[str, ...] = ()


@dataclass
class Decision:
    step: str
    run: bool
    estimate: float = 0.0
    limit: int = 0
    reason: str = ""  # why it is skipped
    left_out: dict[str, str] = field(default_factory=dict)  # part -> why
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        note = self.reason or "; ".join(f"without {part} ({why})" for part, why in self.left_out.items())
        return "\n".join(
            [
                f"STEP_RUN={int(self.run)}",
                f"STEP_ESTIMATE={math.ceil(self.estimate)}",
                f"STEP_LIMIT={self.limit}",
                f"STEP_ENV={shlex.quote(' '.join(f'{k}={v}' for k, v in self.env.items()))}",
                f"STEP_NOTE={shlex.quote(note)}",
            ]
        )


def load_costs(path: Path = COSTS) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BudgetError(f"cannot read the step costs {path}: {error}") from None


def _entry(costs: dict, value: dict, where: str) -> float:
    if not isinstance(value, dict) or not isinstance(value.get("seconds"), (int, float)):
        raise BudgetError(f"{COSTS.name}: {where} has no seconds; each cost is {{'seconds': N, 'status': ...}}.")
    return float(value["seconds"])


def _compiles(costs: dict, listed: list, where: str) -> float:
    """Seconds of [[compile name, target device, count], ...] from the file's compile costs."""
    total = 0.0
    for name, target, count in listed:
        entry = costs["compile"].get(name, {}).get(target)
        total += count * _entry(costs, entry, f"compile {name} on {target} ({where})")
    return total


def steps_for(costs: dict, device: str, sections: str = SECTIONS, skip: str = "") -> list[Step]:
    """The check's steps for `device`, in order of value: the report step split into its sections."""
    if device not in DEVICES:
        raise BudgetError(f"DEVICE={device!r} is not cuda or cpu.")
    wanted = [s.strip() for s in sections.split(",") if s.strip()]
    known = {name.removeprefix("report-") for name in costs["steps"] if name.startswith("report-")}
    unknown = [s for s in wanted if s not in known]
    if unknown or not wanted:
        raise BudgetError(
            f"GPU_CHECK_ONLY={sections!r}: {'no cost for ' + ', '.join(unknown) if unknown else 'no section'} in "
            f"{COSTS.name}; use some of {', '.join(sorted(known))}."
        )
    names = ["pytest-cuda", "bench", *[f"report-{s}" for s in wanted], "x-fast", "compile"]  # X-FAST after C3
    skipped = {s.strip() for s in skip.split(",") if s.strip()}
    bad = skipped - {*costs["steps"], "report"} - {f"report-{s}" for s in known}
    if bad:
        raise BudgetError(
            f"GPU_CHECK_SKIP names {', '.join(sorted(bad))}; use some of pytest-cuda, bench, x-fast, report, "
            f"report-C2 ..., compile."
        )
    steps = []
    for name in names:
        spec = costs["steps"][name]
        parts = []
        for part in spec.get("parts", []):
            if device not in part.get("devices", DEVICES):
                continue
            cost = _entry(costs, part["seconds"][device], f"{name} part {part['name']}") if "seconds" in part else 0
            cost += _compiles(costs, part.get("compiles", {}).get(device, []), f"{name} part {part['name']}")
            parts.append(
                Part(part["name"], cost, tuple(part["needs"]), part["optional"], part.get("off", {}), part.get("mode"))
            )
        base = _entry(costs, spec["base"][device], f"{name} base on {device}")
        base += _compiles(costs, spec.get("compiles", {}).get(device, []), name)
        step = Step(
            name,
            spec["what"],
            base,
            tuple(spec["needs"]),
            tuple(parts),
            spec["limit"],
            spec.get("modes_env"),
            tuple(spec.get("base_modes", ())),
        )
        if name in skipped or (name.startswith("report-") and "report" in skipped):
            step = Step(name, step.what, 0.0, ("skipped",), (), step.limit_variable)
        steps.append(step)
    return steps


def _required(step: Step, off: dict[str, str]) -> float | None:
    """The seconds of the step without its optional parts; None when it cannot run."""
    if any(need in off for need in step.needs):
        return None
    return step.base + sum(p.seconds for p in step.parts if not p.optional and not any(n in off for n in p.needs))


def _words(features: tuple[str, ...]) -> str:
    return " and ".join(FEATURE_WORDS.get(f, f) for f in features)


def decide(
    step: Step,
    left: float,
    later: list[Step],
    off: dict[str, str],
    margin: dict,
    limits: dict[str, str] | None = None,
) -> Decision:
    """Whether `step` starts with `left` seconds left, with which parts and which hard limit."""
    if "skipped" in step.needs:
        return Decision(step.name, False, reason="left out by GPU_CHECK_SKIP")
    missing = [need for need in step.needs if need in off]
    if missing:
        return Decision(step.name, False, reason=f"needs {_words(tuple(missing))}; {off[missing[0]]}")
    decision = Decision(step.name, True)
    modes = list(step.base_modes)
    estimate = step.base
    for part in step.parts:
        lacking = [n for n in part.needs if n in off]
        if lacking:
            decision.left_out[part.name] = f"no {_words(tuple(lacking))}: {off[lacking[0]]}"
        elif not part.optional:
            estimate += part.seconds
            modes += [part.mode] if part.mode else []
    if estimate > left:
        return Decision(step.name, False, estimate, reason=f"estimate {estimate:.0f} s > {max(left, 0):.0f} s left")
    reserve = 0.0  # the later steps that would still fit, by their required parts
    for other in later:
        needed = _required(other, off)
        if needed is not None and estimate + reserve + needed <= left:
            reserve += needed
    for part in step.parts:
        if part.optional and part.name not in decision.left_out:
            if estimate + part.seconds + reserve <= left:
                estimate += part.seconds
                modes += [part.mode] if part.mode else []
            else:
                decision.left_out[part.name] = (
                    f"+{part.seconds:.0f} s does not fit beside the later steps' {reserve:.0f} s in {left:.0f} s left"
                )
    for part in step.parts:
        if part.name in decision.left_out:
            decision.env.update(part.off)
    if step.modes_env:
        decision.env[step.modes_env] = ",".join(modes)
    decision.estimate = estimate
    given = (limits or {}).get(step.limit_variable, "").strip()
    if given:
        if not re.fullmatch(r"[1-9]\d*", given):
            raise BudgetError(f"{step.limit_variable}={given!r} is not a whole number of seconds >= 1.")
        decision.limit = int(given)
    else:
        decision.limit = max(1, math.floor(min(estimate * margin["factor"] + margin["seconds"], left)))
    return decision


def plan(steps: list[Step], left: float, off: dict[str, str], margin: dict, limits: dict[str, str]) -> list[Decision]:
    """Every step's decision, each assumed to take its estimate (what `step` will decide if they do)."""
    decisions = []
    for index, step in enumerate(steps):
        decision = decide(step, left, steps[index + 1 :], off, margin, limits)
        if decision.run:
            left -= decision.estimate
        decisions.append(decision)
    return decisions


def read_off(path: str | None) -> dict[str, str]:
    """feature -> why it is off, from the preflight's JSON (`python -m lablib info --preflight --json FILE`)."""
    if not path:
        return {}
    try:
        return dict(json.loads(Path(path).read_text())["off"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise BudgetError(f"cannot read the preflight {path}: {error}") from None


def describe(decisions: list[Decision], steps: list[Step], left: float) -> list[str]:
    """The plan as lines: a step per line with its estimate and limit, or why it is skipped."""
    what = {s.name: s.what for s in steps}
    lines = [f"plan: {left:.0f} s for the steps (records.tar.gz and summary.md kept aside)"]
    for d in decisions:
        if d.run:
            lines.append(f"  run   {d.step:<12} about {d.estimate:>4.0f} s, limit {d.limit:>4} s  {what[d.step]}")
            lines += [f"          without {part}: {why}" for part, why in d.left_out.items()]
        else:
            lines.append(f"  skip  {d.step:<12} {d.reason}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu_budget.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    duration = commands.add_parser("seconds", help="a duration (480, 480s, 8m) in whole seconds")
    duration.add_argument("text")
    duration.add_argument("--name", default="GPU_CHECK_BUDGET")
    for name in ("plan", "step"):
        command = commands.add_parser(name)
        if name == "step":
            command.add_argument("name")
        command.add_argument("--budget", required=True, help="the check's budget (GPU_CHECK_BUDGET: 480, 8m)")
        command.add_argument("--elapsed", type=float, default=0.0, help="seconds since the check started")
        command.add_argument("--device", default="cuda")
        command.add_argument("--preflight", help="the preflight's JSON file")
        command.add_argument("--sections", default=SECTIONS)
        command.add_argument("--skip", default="")
        command.add_argument("--costs", type=Path, default=COSTS)
    args = parser.parse_args(argv)
    try:
        if args.command == "seconds":
            print(seconds(args.text, args.name))
            return 0
        costs = load_costs(args.costs)
        steps = steps_for(costs, args.device, args.sections, args.skip)
        off = read_off(args.preflight)
        if args.device == "cuda" and "cuda" in off:
            raise BudgetError(off["cuda"].removeprefix("GPU: "))
        limits = {s.limit_variable: os.environ.get(s.limit_variable, "") for s in steps}
        reserve = _entry(costs, costs["reserve"][args.device], f"reserve on {args.device}")
        left = seconds(args.budget) - args.elapsed - reserve
        if args.command == "plan":
            decisions = plan(steps, left, off, costs["margin"], limits)
            print("\n".join(describe(decisions, steps, left)))
            return 0
        names = [s.name for s in steps]
        if args.name not in names:
            raise BudgetError(f"no step {args.name!r}; the steps are {', '.join(names)}.")
        index = names.index(args.name)
        print(decide(steps[index], left, steps[index + 1 :], off, costs["margin"], limits).shell())
        return 0
    except BudgetError as error:
        print(f"gpu-check: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
