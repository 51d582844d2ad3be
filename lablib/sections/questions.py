"""Questions Q1-Q6 answered by looking at the model itself, not by typing numbers.

Q1 conv layers (with and without the 1x1 shortcut projections), Q2 the last linear layer's input and
the feature map behind it (forward hooks), Q3/Q4 parameters, gradients and optimiser state after a
real backward (the counting functions live in lablib.core.model and lablib.core.optim), Q5 tracing vs
scripting on a module with a data-dependent branch, Q6 what scripting ResNet-18 needed. This is
presentation of the model, not a measurement: nothing is recorded in the measurement store, and
everything runs in seconds on a synthetic batch (the answers do not depend on the data). Each
question's answer is written by `q1_sentence` ... `q6_sentence` from what the functions here found,
and `q1_results` ... `q6_results` are the figures its record keeps for the headlines.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from lablib.core.model import IMAGE_SHAPE
from lablib.core.progress import counted
from lablib.core.torchscript import captured_warnings
from lablib.sections.headlines import Headline, answer, latest, number
from lablib.sections.registry import Presenter
from lablib.sections.tables import format_value
from lablib.sections.torchscript import output_verdict


def synthetic_batch(
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | str = "cpu",
    image_shape: tuple[int, int, int] = IMAGE_SHAPE,
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


def _block_of(name: str) -> str:
    # "layer2.0.shortcut.0" -> "layer2.0", "layer1.1.conv2" -> "layer1.1", "conv1" -> "" (the stem)
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else ""


def q1_sentence(convs: pd.DataFrame, linear_layers: int) -> str:
    """Q1's answer from the conv table (conv_layers): the count with and without the 1x1 shortcut projections,
    how the main path adds up, and where the projections sit."""
    shortcut = convs[convs.shortcut]
    main = convs[~convs.shortcut]
    stem = main[main.name.map(_block_of) == ""]
    blocks = main[main.name.map(_block_of) != ""].name.map(_block_of)
    per_block = blocks.value_counts()
    per_block_text = (
        f"{int(per_block.iloc[0])} per residual block × {len(per_block)} blocks"
        if per_block.nunique() == 1
        else f"{len(blocks)} in {len(per_block)} residual blocks"
    )
    where = "; ".join(
        f"`{row['name']}` in block `{_block_of(row['name'])}` ({row['in_channels']} → {row['out_channels']} channels, "
        f"stride {row['stride']})"
        for row in shortcut.to_dict("records")
    )
    text = (
        f"**Q1:** ResNet-18 has **{len(convs)} convolutional layers** counting the {len(shortcut)} projection "
        f"convolutions in the shortcuts ({', '.join(sorted(set(shortcut.kernel))) or 'none'}), and "
        f"**{len(main)}** without them: {counted(len(stem), 'stem convolution')} plus {per_block_text}. The layers "
        f"with "
        f"weights on the main path are those {len(main)} convolutions plus {counted(linear_layers, 'linear layer')}: "
        f"{len(main) + linear_layers}, the number in the name."
    )
    if len(shortcut):
        text += (
            f" The projections sit only where a block changes the number of channels or the resolution, so that "
            f"the shortcut's output has the shape of the block's output: {where}."
        )
    return text


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


def q2_sentence(shapes: pd.DataFrame, in_features: int, out_features: int, feature_map: tuple[int, ...]) -> str:
    """Q2's answer: fc's input size, explained by the shapes the hooks saw (module_shapes) and the feature map
    (B x C x H x W before pooling)."""
    rows = shapes.set_index("module")
    channels, height, width = feature_map[1:]
    image = rows.iloc[0]["input_shape"]
    trail = " → ".join(str(shape[2]) for shape in [image, *(row for row in rows.output_shape if len(row) == 4)])
    stages = ", ".join(f"`{name}`" for name, row in rows.iterrows() if len(row["output_shape"]) == 4)
    return (
        f"**Q2:** the last linear layer takes **{in_features}** inputs (`model.fc.in_features`) and gives "
        f"{out_features} class scores. The reason is the feature map: for a {image[2]}×{image[3]} input, the "
        f"spatial size goes {trail} through {stages}, so the last stage outputs B × {channels} × {height} × {width}; "
        f"global average pooling averages each of the {channels} channels over its {height}×{width} positions, "
        f"giving B × {channels} × 1 × 1, flattened to B × {channels}: the hook on `fc` saw an input of shape "
        f"{rows.loc['fc', 'input_shape']}. So the input dimension is the number of channels of the last stage, "
        f"{channels}, independent of the image size; without the pooling, flattening the map would give "
        f"{channels}×{height}×{width} = {channels * height * width:,} inputs."
    )


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


def _per_type(breakdown: pd.DataFrame) -> str:
    rows = breakdown[breakdown["layer type"] != "total"]
    return ", ".join(f"{row['layer type']} {int(row['parameters']):,}" for row in rows.to_dict("records"))


def _state_names(state: pd.DataFrame, parameters: int) -> tuple[list[str], list[str]]:
    """(states with one element per parameter, the other states), by name."""
    full = [row["state"] for row in state.to_dict("records") if row["elements"] == parameters]
    return full, [name for name in state["state"] if name not in full]


def q3_sentence(
    config, parameters: int, gradients_before: int, gradients_after: int, breakdown: pd.DataFrame, state: pd.DataFrame
) -> str:
    """Q3's answer: trainable parameters (by layer type), gradients after one backward, the optimiser's state.

    `state` is optimizer_state_breakdown after the first step; `config` gives the optimiser and its settings.
    """
    tensors = int(breakdown.set_index("layer type").loc["total", "tensors"])
    if gradients_after == parameters:
        gradients = (
            "one gradient element per trainable parameter, because every parameter takes part in the loss and "
            "autograd stores `p.grad` with the parameter's shape"
        )
    else:
        gradients = f"only {gradients_after:,} of the {parameters:,} parameters received a gradient"
    full, _ = _state_names(state, parameters)
    state_after = int(sum(state.loc[state.state.isin(full), "elements"]))
    kept = f"{', '.join(f'`{name}`' for name in full)}" if full else "no per-parameter state"
    settings = f"lr {config.lr:g}, weight decay {config.weight_decay:g}"
    if config.optimizer.startswith("sgd"):  # the SGD variants are the ones that take the momentum setting
        settings = f"lr {config.lr:g}, momentum {config.momentum:g}, weight decay {config.weight_decay:g}"
    return (
        f"**Q3:** ResNet-18 has **{parameters:,} trainable parameters** in {tensors} tensors ({_per_type(breakdown)}), "
        f"and after one backward pass there are **{gradients_after:,} gradients** (before it: {gradients_before:,}): "
        f"{gradients}. The optimiser does not change these counts; `{config.optimizer}` ({settings}) keeps {kept}: "
        f"{state_after:,} elements "
        f"({state_after / parameters:.0f}× the parameters) after its first step."
    )


def q4_sentence(
    config, parameters: int, gradients_after: int, state: pd.DataFrame, element_bytes: int, sgd_state: int
) -> str:
    """Q4's answer: the same parameters and gradients as with SGD; what differs is the optimiser's state.

    `state` is optimizer_state_breakdown after the first step, `element_bytes` the size of one parameter
    element, `sgd_state` what SGD with momentum keeps after a step with the same gradients.
    """
    full, scalars = _state_names(state, parameters)
    state_after = int(sum(state.loc[state.state.isin(full), "elements"]))
    names = ", ".join(f"`{name}`" for name in full)
    scalar_text = (
        f"; its per-parameter {', '.join(f'`{name}`' for name in scalars)} counters are scalars and not counted"
        if scalars
        else ""
    )
    return (
        f"**Q4:** with `{config.optimizer}` (lr {config.lr:g}, weight decay {config.weight_decay:g}) the model still "
        f"has **{parameters:,} trainable parameters** and, after one backward pass, **{gradients_after:,} "
        f"gradients**: the parameters and the gradients do not depend on the optimiser. What differs is the "
        f"optimiser state: after its first step `{config.optimizer}` holds **{state_after:,} elements** = "
        f"{state_after / parameters:.0f} × {parameters:,} ({names}, one element each per parameter{scalar_text}), "
        f"{state_after * element_bytes / 1e6:.1f} MB at {element_bytes} bytes per element, against {sgd_state:,} "
        f"elements ({sgd_state / parameters:.0f}×, the momentum buffer) for SGD with momentum."
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


def q5_sentence(demo: TraceVsScript, example: torch.Tensor) -> str:
    """Q5's answer: what tracing recorded, where it is wrong, what scripting kept, and what the tracer said."""
    wrong = demo.table[~demo.table["traced matches eager"]]
    tracer_warning = next((w for w in demo.trace_warnings if w.startswith("TracerWarning")), None)
    recorded = demo.traced.code.strip().splitlines()[-1].strip()
    matches = int(demo.table["scripted matches eager"].sum())
    text = (
        f"**Q5:** traced with an example whose sum is {example.sum().item():g}, the traced module's graph "
        f"{'contains a' if demo.traced_graph_has_branch else 'has no'} branch (`prim::If`): it recorded only "
        f"`{recorded}`, and it gives the wrong answer for {', '.join(wrong.input) if len(wrong) else 'no'} "
        f"inputs. The scripted module {'keeps' if demo.scripted_graph_has_branch else 'lost'} the branch and "
        f"matches eager on {matches} of {len(demo.table)} inputs."
    )
    text += (
        f" The tracer warned about it: *{tracer_warning}*" if tracer_warning else " The tracer gave no TracerWarning."
    )
    return text + (
        " So: trace models whose control flow does not depend on the data (it needs no source changes and sees "
        "through any Python); script, or keep the branch out of the model, when it does."
    )


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


def q6_sentence(
    types: pd.DataFrame,
    methods: dict[str, bool],
    annotations: dict[str, str],
    difference: float,
    script_warnings: list[str],
    rejected: ScriptAttempt,
) -> str:
    """Q6's answer: the unchanged model scripted (what was compiled, how its outputs compare), what made that
    possible, and the compiler's error for a construct it rejects.

    `types` is scripted_module_types, `methods` method name -> compiled, `annotations` forward_annotations,
    `difference` the largest eager-vs-scripted output difference.
    """
    compiled = [name for name, done in methods.items() if done]
    skipped = [name for name, done in methods.items() if not done]
    unannotated = [name for name, text in annotations.items() if "unannotated" in text]
    annotated = [name for name in annotations if name not in unannotated]
    text = (
        f"**Q6:** ResNet-18 needed **no changes**: `torch.jit.script` compiled the unchanged model "
        f"({int(types['compiled modules'].sum())} modules of {len(types)} classes: {', '.join(types['class'])}) "
        f"and its outputs are {output_verdict(difference)} to eager's (largest absolute difference {difference:.3g}). "
        f"What makes it scriptable: (1) every `forward` takes and returns tensors; {', '.join(annotated)} annotate "
        "them as `torch.Tensor`"
        + (f", and unannotated arguments ({', '.join(unannotated)}) default to Tensor" if unannotated else "")
        + "; (2) the structure is built in `__init__` with ordinary Python, so the compiler only sees "
        f"straight-line tensor code (compiled: {', '.join(compiled) or 'none'}; not compiled: "
        f"{', '.join(skipped) or 'none'}, it runs once, at construction); (3) submodules are held in attributes and "
        "`nn.Sequential`, which TorchScript compiles recursively; (4) the optional shortcut is an `nn.Sequential` "
        "that is empty (identity) or holds the projection, so `forward` needs no `if self.shortcut is None` on a "
        "module attribute; (5) only `torch` and `torch.nn.functional` operations are used, with no data-dependent "
        "Python control flow, `*args`/`**kwargs`, NumPy or other Python objects."
    )
    if not rejected.ok:
        text += " The contrast above shows the compiler's error for one such construct (`forward(self, *inputs)`)."
    return text + f" The only message scripting gave was: {'; '.join(script_warnings).rstrip('.') or 'none'}."


COUNTED = {  # Q3's and Q4's counts, in words
    "parameters": "parameters",
    "gradients_before": "gradients before backward",
    "gradients_after": "gradients after backward",
    "optimizer_state_before": "optimiser state before step",
    "optimizer_state_after": "optimiser state after step",
}


def counts_table(counts: Mapping[str, int]) -> pd.DataFrame:
    """Q3's and Q4's counts as two columns: what was counted (in words) and how many elements."""
    return pd.DataFrame({"counted": [COUNTED[name] for name in counts], "elements": [int(v) for v in counts.values()]})


# --- what each question's record keeps (the headlines read it) -------------------------------------


def q1_results(convs: pd.DataFrame) -> dict[str, Any]:
    """Q1's figures from the conv table (conv_layers)."""
    shortcut = convs[convs.shortcut]
    return {
        "conv_layers_total": int(len(convs)),
        "conv_layers_shortcut": int(len(shortcut)),
        "conv_layers_without_shortcut": int(len(convs) - len(shortcut)),
        "shortcut_names": shortcut.name.tolist(),
    }


def q2_results(shapes: pd.DataFrame, in_features: int, out_features: int, feature_map: tuple[int, ...]) -> dict:
    """Q2's figures: fc's sizes, the feature map before pooling (C x H x W) and what the hook on fc saw."""
    return {
        "fc_in_features": int(in_features),
        "fc_out_features": int(out_features),
        "feature_map_shape": [int(size) for size in feature_map[1:]],
        "fc_input_shape": [int(size) for size in shapes.set_index("module").loc["fc", "input_shape"][1:]],
    }


def q3_results(counts: Mapping[str, int], breakdown: pd.DataFrame, loss: float) -> dict[str, Any]:
    """Q3's (and Q4's) figures: `counts` has parameters, gradients_before/after, optimizer_state_before/after."""
    parameters = int(counts["parameters"])
    return {
        **{name: int(value) for name, value in counts.items()},
        "optimizer_state_ratio": int(counts["optimizer_state_after"]) / parameters,
        "loss_first_step": float(loss),
        "parameter_tensors": int(breakdown.set_index("layer type").loc["total", "tensors"]),
    }


def q5_results(demo: TraceVsScript) -> dict[str, Any]:
    wrong = demo.table[~demo.table["traced matches eager"]]
    return {
        "traced_has_branch": demo.traced_graph_has_branch,
        "scripted_has_branch": demo.scripted_graph_has_branch,
        "traced_wrong_inputs": wrong.input.tolist(),
        "scripted_all_match": bool(demo.table["scripted matches eager"].all()),
        "trace_warnings": list(demo.trace_warnings),
    }


def q6_results(types: pd.DataFrame, difference: float, script_warnings: list[str], rejected: ScriptAttempt) -> dict:
    return {
        "scripted_unchanged": True,  # the model scripted as lablib.core.model defines it
        "max_abs_difference": float(difference),
        "compiled_classes": types["class"].tolist(),
        "compiled_modules": int(types["compiled modules"].sum()),
        "script_warnings": list(script_warnings),
        "contrast_rejected": not rejected.ok,
    }


# --- answers at a glance ----------------------------------------------------------------------------


def q1_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    total, shortcut = int(row["conv_layers_total"]), int(row["conv_layers_shortcut"])
    text = f"{total} convolutional layers ({total - shortcut} without the {shortcut} 1×1 shortcut convolutions)"
    return [answer("q1_conv_layers", "Q1", text, total, "layers", row)]


def q2_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    size = int(row["fc_in_features"])
    channels = (row.get("feature_map_shape") or [size])[0]
    text = f"input dimension {size} (the {channels} channels of the last feature map after global pooling)"
    return [answer("q2_last_linear", "Q2", text, size, "", row)]


def parameters_headlines(section: str, part: str):
    """Q3's and Q4's headline: parameters and gradients, and the optimiser's state."""

    def build(runs: pd.DataFrame) -> list[Headline]:
        row = latest(runs)
        parameters, gradients = int(row["parameters"]), int(row["gradients_after"])
        text = f"{format_value(parameters)} trainable parameters and {format_value(gradients)} gradients"
        state = number(row.get("optimizer_state_after"))
        if state is not None:
            text += f"; {row.get('optimizer') or 'the optimiser'} keeps {format_value(int(state))} state elements"
        return [answer(section, part, text, parameters, "parameters", row)]

    return build


def q5_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    wrong = row.get("traced_wrong_inputs") or []
    kept = "keeps" if bool(row.get("scripted_has_branch")) else "loses"
    lost = "keeps" if bool(row.get("traced_has_branch")) else "loses"
    text = f"tracing {lost} the data-dependent branch (wrong on {counted(len(wrong), 'input')}); scripting {kept} it"
    return [answer("q5_trace_vs_script", "Q5", text, len(wrong), "inputs traced wrong", row)]


def q6_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    changed = "no change needed: scripted as written" if bool(row.get("scripted_unchanged")) else "changes were needed"
    modules = number(row.get("compiled_modules"))
    text = f"{changed}, {int(modules) if modules is not None else '—'} modules compiled"
    difference = number(row.get("max_abs_difference"))
    text += f", max abs difference {difference:.1e}" if difference is not None else ""
    return [answer("q6_scripting_changes", "Q6", text, None if modules is None else int(modules), "modules", row)]


PRESENTS = (
    Presenter("q1_conv_layers", ("Q1",), headlines=q1_headlines),
    Presenter("q2_last_linear", ("Q2",), headlines=q2_headlines),
    Presenter("q3_params_sgd", ("Q3",), headlines=parameters_headlines("q3_params_sgd", "Q3")),
    Presenter("q4_params_adam", ("Q4",), headlines=parameters_headlines("q4_params_adam", "Q4")),
    Presenter("q5_trace_vs_script", ("Q5",), headlines=q5_headlines),
    Presenter("q6_scripting_changes", ("Q6",), headlines=q6_headlines),
)
