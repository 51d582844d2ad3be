"""Estimate: how long the stale points will take on this machine.

A point's estimate is the last duration of the same point (same section and
parameters apart from the data path, any code version); without one, a fixed
overhead (kernel start, imports, data loading) plus the section's cost in
training runs of its profile, each timed by a short probe: ResNet-18 forward
and backward on one batch of 32 on the device the points will use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lablib.report.resolve import PointState

OVERHEAD_S = 15.0  # kernel start, imports and data loading of one papermill execution
FULL_TRAIN_IMAGES = 50_000
SLACK = 1.3  # evaluation, logging and the loader on top of the probe's compute


class Estimator:
    def __init__(self, index: Mapping[str, list[dict[str, Any]]], defaults: Mapping[str, Any], cuda: bool):
        self.index, self.defaults, self.cuda = index, defaults, cuda
        self._probe_s: float | None = None

    def probe_seconds_per_image(self) -> float:
        """Seconds per training image on this machine: ResNet-18 forward+backward on one batch of 32."""
        if self._probe_s is None:
            import torch

            from lablib.core.model import resnet18
            from lablib.core.timing import time_calls

            device = torch.device("cuda" if self.cuda and self.defaults.get("device", "auto") != "cpu" else "cpu")
            model = resnet18().to(device)
            images = torch.randn(32, 3, 32, 32, device=device)
            labels = torch.randint(0, 10, (32,), device=device)

            def step() -> None:
                model.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(images), labels).backward()

            times = time_calls(step, device, warmup=1, runs=2)
            self._probe_s = min(times) / 32
            del model, images, labels  # the points measure the GPU next: leave it empty
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return self._probe_s

    def seconds(self, state: PointState) -> float:
        """The estimated seconds of one point (see the module docstring)."""
        same = {k: v for k, v in state.parameters.items() if k != "data"}
        previous = [
            p
            for attempts in self.index.values()
            for p in attempts
            if p.get("section") == state.section.name
            and p.get("status") == "complete"
            and p.get("duration_s")
            and state.status != "unresolved"
            and {k: v for k, v in (p.get("parameters") or {}).items() if k != "data"} == same
        ]
        if previous:
            return float(max(previous, key=lambda p: p.get("ended") or "")["duration_s"])
        if not state.section.cost:
            return OVERHEAD_S
        parameters = {
            **self.defaults,
            **{k: v for k, v in state.section.params.items() if not isinstance(v, dict)},
            **state.parameters,
        }
        images = int(parameters.get("limit_train") or FULL_TRAIN_IMAGES)
        epochs = int(parameters.get("epochs") or 5)
        return OVERHEAD_S + state.section.cost * images * epochs * self.probe_seconds_per_image() * SLACK
