"""Questions Q1-Q6 answered by looking at the model itself, not by typing numbers.

Q1 conv layers (with and without the 1x1 shortcut projections), Q2 the last
linear layer's input and the feature map behind it (forward hooks), Q3/Q4
parameters, gradients and optimiser state after a real backward (the counting
functions live in lablib.core.model and lablib.core.optim), Q5 tracing vs scripting on a
module with a data-dependent branch, Q6 what scripting ResNet-18 needed.
Everything here runs on a synthetic batch: the answers do not depend on the data.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from lablib.sections.inference import captured_warnings


def synthetic_batch(
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | str = "cpu",
    image_shape: tuple[int, int, int] = (3, 32, 32),
    classes: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B x C x H x W standard-normal images and B labels, from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn((batch_size, *image_shape), generator=generator)
    labels = torch.randint(0, classes, (batch_size,), generator=generator)
    return images.to(device), labels.to(device)


# --- Q1: convolutions -------------------------------------------------------------


def _is_shortcut(name: str) -> bool:
    return "shortcut" in name.split(".")


def conv_layers(model: nn.Module) -> pd.DataFrame:
    """One row per nn.Conv2d in module order: name, channels, kernel, stride, shortcut or not."""
    rows = [
        {
            "name": name,
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "kernel": "x".join(map(str, module.kernel_size)),
            "stride": module.stride[0],
            "shortcut": _is_shortcut(name),
        }
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    return pd.DataFrame(rows, columns=["name", "in_channels", "out_channels", "kernel", "stride", "shortcut"])


@dataclass(frozen=True)
class ConvCount:
    total: int  # every nn.Conv2d
    shortcut: int  # 1x1 projections inside a block's shortcut
    without_shortcut: int  # the stem and the blocks' 3x3 convs


def count_convs(model: nn.Module) -> ConvCount:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    shortcut = sum(_is_shortcut(name) for name in names)
    return ConvCount(len(names), shortcut, len(names) - shortcut)


# --- Q2: shapes seen by forward hooks ----------------------------------------------------


def _shape(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return tuple(value.shape) if torch.is_tensor(value) else None


@torch.no_grad()
def module_shapes(model: nn.Module, inputs: torch.Tensor, names: Iterable[str]) -> pd.DataFrame:
    """Input and output shape of each named submodule during one forward pass.

    Forward hooks see the tensors as they really flow (e.g. fc gets B x 512 after
    the pooling and flatten in ResNet.forward); they are removed afterwards.
    """
    seen: dict[str, dict[str, Any]] = {}
    handles = []
    modules = dict(model.named_modules())

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:  # None: the output is left as it is
            seen.setdefault(
                name,
                {
                    "module": name,
                    "type": type(module).__name__,
                    "input_shape": _shape(args),
                    "output_shape": _shape(output),
                },
            )

        return hook

    for name in names:
        if name not in modules:
            raise KeyError(f"model has no submodule {name!r}; known: {', '.join(list(modules)[1:12])}, ...")
        handles.append(modules[name].register_forward_hook(recorder(name)))
    was_training = model.training
    try:
        model.eval()
        model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return pd.DataFrame([seen[name] for name in names if name in seen])


# --- Q3/Q4: where the parameters are ------------------------------------------------------


def parameter_breakdown(model: nn.Module) -> pd.DataFrame:
    """Trainable parameter tensors and elements per layer type (Conv2d, BatchNorm2d, Linear)."""
    tensors: Counter[str] = Counter()
    elements: Counter[str] = Counter()
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            kind = type(module).__name__
            tensors[kind] += len(own)
            elements[kind] += sum(p.numel() for p in own)
    table = pd.DataFrame(
        {
            "layer type": list(elements),
            "tensors": [tensors[k] for k in elements],
            "parameters": [elements[k] for k in elements],
        }
    )
    total = pd.DataFrame(
        [{"layer type": "total", "tensors": table.tensors.sum(), "parameters": table.parameters.sum()}]
    )
    return pd.concat([table, total], ignore_index=True)


def optimizer_state_breakdown(optimizer: torch.optim.Optimizer) -> pd.DataFrame:
    """Elements the optimiser keeps per state name (Adam: exp_avg, exp_avg_sq; scalars apart)."""
    elements: Counter[str] = Counter()
    tensors: Counter[str] = Counter()
    for state in optimizer.state.values():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[name] += 1
                elements[name] += value.numel()
    return pd.DataFrame(
        {
            "state": list(elements),
            "tensors": [tensors[k] for k in elements],
            "elements": [elements[k] for k in elements],
        }
    )


# --- Q5: tracing vs scripting ---------------------------------------------------------------


class SignBranch(nn.Module):
    """Doubles an input whose sum is positive, negates any other: a data-dependent branch.

    torch.jit.trace records the operations one example input takes, so the
    branch not taken disappears; torch.jit.script compiles the Python source,
    so the `if` survives as prim::If in the graph.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return -x


@dataclass
class TraceVsScript:
    traced: torch.jit.ScriptModule
    scripted: torch.jit.ScriptModule
    table: pd.DataFrame  # one row per input: eager, traced and scripted outputs, and whether each matches
    trace_warnings: list[str] = field(default_factory=list)  # what the tracer said while tracing
    script_warnings: list[str] = field(default_factory=list)

    @property
    def traced_graph_has_branch(self) -> bool:
        return "prim::If" in str(self.traced.graph)

    @property
    def scripted_graph_has_branch(self) -> bool:
        return "prim::If" in str(self.scripted.graph)


@torch.no_grad()
def trace_vs_script(module: nn.Module, example: torch.Tensor, inputs: dict[str, torch.Tensor]) -> TraceVsScript:
    """Trace `module` with `example`, script it, and run eager/traced/scripted on each input."""
    module.eval()
    with captured_warnings() as trace_warnings:
        traced = torch.jit.trace(module, example)
    with captured_warnings() as script_warnings:
        scripted = torch.jit.script(module)
    rows = []
    for name, value in inputs.items():
        eager, by_trace, by_script = module(value), traced(value), scripted(value)
        rows.append(
            {
                "input": name,
                "input sum": round(value.sum().item(), 3),
                "eager": eager.flatten().tolist(),
                "traced": by_trace.flatten().tolist(),
                "scripted": by_script.flatten().tolist(),
                "traced matches eager": bool(torch.equal(eager, by_trace)),
                "scripted matches eager": bool(torch.equal(eager, by_script)),
            }
        )
    return TraceVsScript(traced, scripted, pd.DataFrame(rows), trace_warnings, script_warnings)


# --- Q6: what scripting ResNet-18 needed ----------------------------------------------------


class VariadicForward(nn.Module):
    """A construct TorchScript rejects (forward(*inputs)), to contrast with ResNet-18."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack(inputs).sum(0)


@dataclass(frozen=True)
class ScriptAttempt:
    ok: bool
    message: str  # the first lines of the error, or "" when it scripted
    warnings: tuple[str, ...] = ()


def try_script(module: nn.Module) -> ScriptAttempt:
    """Script `module` and report success or the compiler's error (its first 3 lines)."""
    message = ""
    with captured_warnings() as texts:  # filled when the block ends
        try:
            torch.jit.script(module)
        except Exception as error:  # torch.jit.frontend errors have several types
            lines = [line for line in str(error).splitlines() if line.strip()]
            message = f"{type(error).__name__}: " + "\n".join(lines[:3])
    return ScriptAttempt(not message, message, tuple(texts))


def scripted_module_types(scripted: torch.jit.ScriptModule) -> pd.DataFrame:
    """How many submodules of each original class the scripted model compiled."""
    counts = Counter(module.original_name for _, module in scripted.named_modules())
    return pd.DataFrame({"class": list(counts), "compiled modules": list(counts.values())})


def forward_annotations(model: nn.Module) -> dict[str, str]:
    """The type annotations of each forward that scripting relies on, per class."""
    found: dict[str, str] = {}
    for module in model.modules():
        kind = type(module)
        if kind.__name__ in found:
            continue
        signature = inspect.signature(kind.forward)
        parts = [f"{name}: {_annotation(p.annotation)}" for name, p in signature.parameters.items() if name != "self"]
        result = signature.return_annotation
        found[kind.__name__] = f"({', '.join(parts)}) -> {_annotation(result)}"
    return found


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "unannotated (TorchScript assumes Tensor)"
    return str(getattr(annotation, "__name__", annotation))
