"""Inference sections C7-C10: TorchScript, its graph, test accuracy, and latency.

C7 scripts the trained ResNet-18, saves it with its state_dict in the run folder,
reloads it and checks the outputs are identical. C8/C9/C10 (and XC-2026, in
lablib.sections.libtorch) reuse that model: `find_source_run` is the one search,
the latest complete C7 record with the same tag and data fingerprint; C8-C10
train one themselves when none exists (`obtain_model`). C10 times single-image
inference (1 x 3 x 32 x 32, eval mode, no_grad) for PyTorch eager, TorchScript,
torch.export and AOTInductor on each device; `latency_summary` (seconds in,
milliseconds out) is the one summary of per-call times, C10's and XC-2026's.
The sentences each section writes (`c7_sentence` ... `c10_paragraphs`) live here
with their thresholds.

torch 2.13 deprecates TorchScript: torch.jit.script, .save and .load each raise a
DeprecationWarning. The lab still asks for TorchScript, so every step here
captures the warning's text and returns it, for the notebooks to show and explain.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lablib.core.errors import LabError
from lablib.core.model import IMAGE_SHAPE
from lablib.core.timing import time_calls

SOURCE_SECTION = "c7_torchscript"  # the section whose records hold the scripted model
SCRIPTED_FILE = "model_scripted.pt"  # torch.jit.save of the scripted model
STATE_DICT_FILE = "model_state_dict.pt"  # the eager model's weights (CPU tensors)
RUNTIMES = ("PyTorch eager", "TorchScript", "torch.export", "AOTInductor")
SINGLE_IMAGE = (1, *IMAGE_SHAPE)  # C10 and XC-2026 time one 1 x 3 x 32 x 32 image per call
NOISY_SPREAD = 3.0  # p95 / p5 above this: the narrative warns that the timing machine was busy
FLOAT_TOLERANCE = 1e-4  # a largest logit difference below this is float rounding, not a different model


def shape_text(shape: Sequence[int]) -> str:
    """(1, 3, 32, 32) -> "1×3×32×32", as the narrative writes a tensor's shape."""
    return "×".join(str(int(size)) for size in shape)


# --- warnings --------------------------------------------------------------------


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Record the distinct warnings raised in the block as "Category: text", in order.

    torch.jit.script warns once per scripted submodule (33 times for ResNet-18);
    one line per distinct text is what a reader needs.
    """
    texts: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield texts
    for item in caught:
        text = f"{item.category.__name__}: {item.message}"
        if text not in texts:
            texts.append(text)


# --- TorchScript: script, save, reload, compare -------------------------------------


@dataclass
class Scripted:
    module: torch.jit.ScriptModule
    warnings: list[str]  # distinct "Category: text" lines torch.jit.script raised


def script_model(model: nn.Module) -> Scripted:
    """torch.jit.script(model) with its warnings captured (the model is put in eval mode)."""
    model.eval()
    with captured_warnings() as texts:
        module = torch.jit.script(model)
    return Scripted(module, texts)


def save_scripted(module: torch.jit.ScriptModule, path: Path | str) -> list[str]:
    """torch.jit.save; returns the warnings it raised."""
    with captured_warnings() as texts:
        torch.jit.save(module, str(path))
    return texts


def load_scripted(path: Path | str, device: torch.device | str = "cpu") -> Scripted:
    """torch.jit.load onto `device`, in eval mode, with its warnings captured."""
    with captured_warnings() as texts:
        module = torch.jit.load(str(path), map_location=torch.device(device))
    module.eval()
    return Scripted(module, texts)


def save_state_dict(model: nn.Module, path: Path | str) -> None:
    """The weights as CPU tensors, so the file loads on any machine."""
    torch.save({name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}, str(path))


def load_resnet18(path: Path | str, device: torch.device | str = "cpu", batch_norm: bool = True) -> nn.Module:
    """A lab ResNet-18 with the weights of a saved state_dict, in eval mode on `device`."""
    from lablib.core.model import resnet18

    model = resnet18(batch_norm=batch_norm)
    model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    return model.to(device).eval()


@torch.no_grad()
def max_abs_difference(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
) -> float:
    """max |reference(inputs) - candidate(inputs)| over all outputs (0.0 means bitwise identical).

    Both are called as they are: put nn.Modules in eval mode first (an exported
    module refuses .eval(); it was exported in eval mode).
    """
    return (reference(inputs).float() - candidate(inputs).float()).abs().max().item()


def example_images(dataset, count: int = 128, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first `count` images of a dataset (test transforms applied) as one B x C x H x W batch."""
    count = min(count, len(dataset))
    if count == 0:
        raise LabError("the dataset is empty; pass a larger limit_test (or 0 for the whole test set).")
    return torch.stack([dataset[index][0] for index in range(count)]).to(device)


@dataclass
class ScriptRecord:
    """What C7 did: the files written, the reloaded module, and how its outputs compare."""

    scripted: torch.jit.ScriptModule  # the module reloaded with torch.jit.load
    scripted_path: Path
    state_dict_path: Path
    max_abs_difference: float  # eager vs reloaded TorchScript on `compared_images` images
    compared_images: int
    warnings: dict[str, list[str]] = field(default_factory=dict)  # step -> distinct warning lines

    @property
    def identical(self) -> bool:
        return self.max_abs_difference == 0.0

    def warning_lines(self) -> list[str]:
        """Every distinct warning line over the three steps, in order."""
        lines: list[str] = []
        for texts in self.warnings.values():
            lines += [text for text in texts if text not in lines]
        return lines


def script_save_reload(model: nn.Module, folder: Path | str, inputs: torch.Tensor) -> ScriptRecord:
    """Script `model`, save it and its state_dict into `folder`, reload, compare on `inputs`.

    The model stays on its device; the reloaded module is mapped to the inputs' device.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    scripted = script_model(model)
    scripted_path, state_path = folder / SCRIPTED_FILE, folder / STATE_DICT_FILE
    saved = save_scripted(scripted.module, scripted_path)
    save_state_dict(model, state_path)
    reloaded = load_scripted(scripted_path, inputs.device)
    difference = max_abs_difference(model, reloaded.module, inputs)
    return ScriptRecord(
        reloaded.module,
        scripted_path,
        state_path,
        difference,
        len(inputs),
        {"torch.jit.script": scripted.warnings, "torch.jit.save": saved, "torch.jit.load": reloaded.warnings},
    )


def output_verdict(max_abs_difference: float) -> str:
    """How two models' outputs compare, from their largest absolute difference."""
    if max_abs_difference == 0.0:
        return "identical (bitwise)"
    if max_abs_difference < FLOAT_TOLERANCE:
        return f"equal within float rounding (below {FLOAT_TOLERANCE:g})"
    return f"**different** (above the float tolerance {FLOAT_TOLERANCE:g})"


def c7_sentence(record: ScriptRecord, epochs: list, train_images: int, device: str) -> str:
    """C7's conclusion: what was trained, scripted, saved and reloaded, and how the outputs compare."""
    last = epochs[-1]
    return (
        f"**C7:** after {len(epochs)} epoch(s) on {train_images:,} training images on `{device}` (final training "
        f"loss {last.loss:.3f}, accuracy {last.accuracy:.2f} %), the model was scripted, saved to "
        f"`{record.scripted_path.name}` and reloaded with `torch.jit.load`. On {record.compared_images} test images "
        f"the maximum absolute difference between the eager and the reloaded TorchScript logits is "
        f"**{record.max_abs_difference:.3g}**: the outputs are {output_verdict(record.max_abs_difference)}."
    )


def warning_paragraphs(warnings_by_step: dict[str, list[str]], torch_version: str) -> list[str]:
    """C7.3: each captured warning in full, then what a DeprecationWarning on TorchScript means."""
    bullets = [f"- `{step}`: *{text}*" for step, texts in warnings_by_step.items() for text in texts]
    if not bullets:
        return [f"torch {torch_version} raised no warning while scripting, saving and loading."]
    distinct = {text for texts in warnings_by_step.values() for text in texts}
    paragraphs = [
        "\n".join(bullets),
        f"torch {torch_version} raised {len(distinct)} distinct warning(s) while scripting, saving and loading "
        "(shown above, captured as they were raised).",
    ]
    if any(text.startswith("DeprecationWarning") for text in distinct):
        paragraphs[-1] += (
            " A `DeprecationWarning` means the API still works in this version but is no longer developed and may "
            "be removed in a future release: TorchScript is in maintenance mode. The successors it names are "
            "`torch.compile` (speed-ups inside Python) and `torch.export` (a whole-graph export, which AOTInductor "
            "compiles into a package that C++ can load without Python). The lab asks for TorchScript, so C7–C10 "
            "use it, and C10 adds `torch.export` and AOTInductor as extra rows so the replacement is measured too."
        )
    return paragraphs


# --- C8: the graph -----------------------------------------------------------------


def graph_text(scripted: torch.jit.ScriptModule, method: str = "forward") -> str:
    """The TorchScript IR of one method (`scripted.graph` for forward)."""
    return str(getattr(scripted, method).graph)


_PLUMBING = (
    "prim::Constant",
    "prim::GetAttr",
    "prim::ListConstruct",
    "prim::TupleConstruct",
    "prim::TupleUnpack",
    "prim::ListUnpack",
    "prim::NumToTensor",
)


def _class_name(type_text: str) -> str:
    # "__torch__.torch.nn.modules.container.___torch_mangle_1.Sequential" -> "Sequential"
    return type_text.rsplit(".", 1)[-1]


def top_level_operations(scripted: torch.jit.ScriptModule, method: str = "forward") -> pd.DataFrame:
    """The operations `method`'s graph performs, in order, one row each.

    Calls of another method of the same module (ResNet.forward -> self.features)
    are expanded in place, so the table reads as the model's data path; calls
    into submodules (conv1, layer1, ...) stay one row each, as the graph shows
    them. Graph plumbing (constants, attribute reads, list building) is left out.
    """
    rows: list[dict[str, Any]] = []

    def walk(graph, method_name: str) -> None:
        self_value = next(iter(graph.inputs()))
        for node in graph.nodes():
            kind = node.kind()
            if kind in _PLUMBING:
                continue
            if kind == "prim::CallMethod":
                target = node.inputsAt(0)
                name = node.s("name")
                if target.debugName() == self_value.debugName() or target.node().kind() == "prim::Param":
                    walk(getattr(scripted, name).graph, name)  # a method of the model itself
                    continue
                owner = target.node()
                attribute = owner.s("name") if owner.kind() == "prim::GetAttr" else target.debugName()
                rows.append(
                    {
                        "operation": f"{attribute}.{name}",
                        "kind": "submodule call",
                        "type": _class_name(str(target.type())),
                        "in method": method_name,
                    }
                )
            elif kind == "prim::CallFunction":
                constant = node.inputsAt(0).node()
                function = constant.s("name") if constant.hasAttribute("name") else str(node.inputsAt(0).type())
                rows.append(
                    {
                        "operation": f"F.{function}",
                        "kind": "function call",
                        "type": "torch.nn.functional",
                        "in method": method_name,
                    }
                )
            else:
                rows.append(
                    {"operation": kind, "kind": "operator", "type": kind.split("::")[0], "in method": method_name}
                )

    walk(getattr(scripted, method).graph, method)
    table = pd.DataFrame(rows, columns=["operation", "kind", "type", "in method"])
    table.insert(0, "step", range(1, len(table) + 1))
    return table


def operation_sequence(operations: pd.DataFrame) -> list[str]:
    """The operations column without the ".forward" of submodule calls: ["conv1", "bn1", "F.relu", ...]."""
    return [name.removesuffix(".forward") for name in operations.operation]


def _what_it_is(scripted: torch.jit.ScriptModule, row: dict[str, Any]) -> str:
    if row["kind"] != "submodule call":
        return {"function call": "a `prim::CallFunction`", "operator": "an operator run directly"}[row["kind"]]
    if row["type"] != "Sequential":
        return f"a {row['type']}"
    children = Counter(child.original_name for child in getattr(scripted, row["operation"].split(".")[0]).children())
    return "a Sequential of " + ", ".join(f"{count} × {name}" for name, count in children.items())


def c8_sentence(scripted: torch.jit.ScriptModule, operations: pd.DataFrame) -> str:
    """C8's conclusion: the sequence of top-level operations, and what each step is, read from the module."""
    sequence = operation_sequence(operations)
    groups: list[tuple[list[str], str]] = []  # consecutive steps of the same kind, e.g. layer1-layer4
    for name, row in zip(sequence, operations.to_dict("records")):
        what = _what_it_is(scripted, row)
        if groups and groups[-1][1] == what and row["kind"] == "submodule call":
            groups[-1][0].append(name)
        else:
            groups.append(([name], what))
    parts = [
        f"`{names[0]}` ({what})" if len(names) == 1 else f"`{names[0]}`–`{names[-1]}` (each {what})"
        for names, what in groups
    ]
    return (
        f"**C8:** the scripted graph performs {len(sequence)} top-level operations: "
        + " → ".join(f"`{name}`" for name in sequence)
        + ". Step by step: "
        + ", ".join(parts)
        + ". Each submodule call is one `prim::CallMethod` node of the graph; what it runs is compiled inside that "
        "submodule."
    )


# --- C8/C9/C10: where the model comes from --------------------------------------------


def find_source_run(tag: str, fingerprint: str, source_run: str = "", root: Path | None = None) -> Path | None:
    """The folder of the C7 run whose model to use, or None when there is none.

    `source_run` names a run folder explicitly (a path, or a run id under
    runs/c7_torchscript/); otherwise the latest complete c7_torchscript run
    with the same tag and data fingerprint that holds both model files.
    """
    from lablib.core.runs import iter_runs, runs_root

    if source_run:
        path = Path(source_run).expanduser()
        if not path.exists():
            path = (root or runs_root()) / SOURCE_SECTION / source_run
        meta_path = path / "run.json"
        if not meta_path.exists():
            raise LabError(
                f"source_run={source_run!r} is not a run folder (no {meta_path}); pass a "
                f"folder under runs/{SOURCE_SECTION}/ or leave it empty to use the latest C7 run."
            )
        import json

        status = json.loads(meta_path.read_text()).get("status")
        missing = [name for name in (SCRIPTED_FILE, STATE_DICT_FILE) if not (path / name).exists()]
        if status != "complete" or missing:
            raise LabError(
                f"source_run={source_run!r} has status {status!r} and lacks {missing or 'nothing'}; "
                "pass a complete c7_torchscript run, or leave source_run empty."
            )
        return path
    candidates = [
        (meta.get("ended") or "", path)
        for path, meta in iter_runs(SOURCE_SECTION, root)
        if meta.get("status") == "complete"
        and meta.get("tag") == tag
        and meta.get("data", {}).get("fingerprint") == fingerprint
        and (path / SCRIPTED_FILE).exists()
        and (path / STATE_DICT_FILE).exists()
    ]
    return max(candidates)[1] if candidates else None


@dataclass
class SourceModel:
    """The trained model a section uses, eager and TorchScript, and where it came from."""

    model: nn.Module  # eager ResNet-18, eval mode, on the device
    scripted: torch.jit.ScriptModule  # reloaded with torch.jit.load, on the device
    scripted_path: Path
    origin: str  # "c7_torchscript/<run id>" or "trained here"
    settings: dict[str, Any]  # the training settings of the run that trained it
    trained_images: int
    trained_epochs: int
    record: ScriptRecord | None = None  # set when this section trained and scripted the model itself
    warnings: list[str] = field(default_factory=list)

    @property
    def trained_here(self) -> bool:
        return self.record is not None

    def describe(self, tag: str, fingerprint: str) -> str:
        """One sentence for the narrative: which model, and why."""
        what = f"{self.trained_epochs} epoch(s) on {self.trained_images:,} training images"
        if self.trained_here:
            return (
                f"No complete `{SOURCE_SECTION}` record with tag {tag!r} and data fingerprint "
                f"`{fingerprint}` exists, so this notebook trained its own model with its parameters "
                f"({what}), scripted it, saved both files in its run folder and reloaded the scripted one."
            )
        return (
            f"The model is the one trained and scripted by C7 in run `{self.origin}` ({what}); "
            f"the eager model is rebuilt from its state_dict and the TorchScript model reloaded with "
            f"`torch.jit.load`."
        )


def obtain_model(
    config, data, tag: str = "", source_run: str = "", run=None, device: torch.device | None = None
) -> SourceModel:
    """Load C7's model (see `find_source_run`), or train and script one with `config`.

    When training, the epochs are logged to `run` and both model files are
    written into its folder, so the section's own record holds its model.
    """
    from lablib.core.runs import load_run
    from lablib.core.train import resolve_device, train

    device = device or resolve_device(config.device)
    path = find_source_run(tag, data.fingerprint, source_run)
    if path is not None:
        meta = load_run(path)
        settings = meta.get("settings", {})
        model = load_resnet18(path / STATE_DICT_FILE, device, settings.get("batch_norm", True))
        loaded = load_scripted(path / SCRIPTED_FILE, device)
        epochs = meta.get("epochs", [])
        return SourceModel(
            model,
            loaded.module,
            path / SCRIPTED_FILE,
            f"{SOURCE_SECTION}/{path.name}",
            settings,
            int(meta.get("data", {}).get("train_images", 0)),
            len(epochs),
            None,
            loaded.warnings,
        )
    if run is None:
        raise LabError(
            "no C7 model was found and no run was given to record the training into; "
            "start a run first (lablib.core.runs.start_run) and pass it as run=."
        )
    result = train(config, run=run, data=data)
    record = script_save_reload(result.model, run.path, example_images(data.test, 128, device))
    return SourceModel(
        result.model.eval(),
        record.scripted,
        record.scripted_path,
        "trained here",
        config.to_dict(),
        len(data.train),
        len(result.epochs),
        record,
        record.warning_lines(),
    )


# --- C9: accuracy of both models in one pass ------------------------------------------


@dataclass(frozen=True)
class PairEval:
    accuracy_eager: float  # top-1, %
    accuracy_scripted: float  # top-1, %
    loss_eager: float  # mean cross entropy per image
    loss_scripted: float
    images: int
    disagreements: int  # images whose predicted class differs between the two models
    max_abs_difference: float  # largest logit difference over the whole set

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate_pair(model: nn.Module, scripted: torch.jit.ScriptModule, loader, device: torch.device) -> PairEval:
    """Top-1 accuracy and loss of both models on the same batches, read from the device once."""
    model.eval()
    scripted.eval()
    zero = torch.zeros((), device=device)
    loss = [zero.clone(), zero.clone()]
    correct = [zero.clone().long(), zero.clone().long()]
    disagreements = zero.clone().long()
    difference = zero.clone()
    images = 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        outputs = (model(inputs).float(), scripted(inputs).float())
        for index, logits in enumerate(outputs):
            loss[index] += nn.functional.cross_entropy(logits, targets, reduction="sum")
            correct[index] += (logits.argmax(1) == targets).sum()
        disagreements += (outputs[0].argmax(1) != outputs[1].argmax(1)).sum()
        difference = torch.maximum(difference, (outputs[0] - outputs[1]).abs().max())
        images += len(targets)
    count = max(images, 1)
    return PairEval(
        100.0 * correct[0].item() / count,
        100.0 * correct[1].item() / count,
        loss[0].item() / count,
        loss[1].item() / count,
        images,
        int(disagreements.item()),
        difference.item(),
    )


def c9_sentence(pair: PairEval, device: str) -> str:
    """C9's conclusion: both accuracies, checked equal or not, and how the two models' outputs differ."""
    if pair.accuracy_eager == pair.accuracy_scripted:
        check = "**identical**, as checked"
    else:
        check = f"**different** (by {abs(pair.accuracy_eager - pair.accuracy_scripted):.4f} points)"
    return (
        f"**C9:** on {pair.images:,} test images on `{device}`, the PyTorch model reaches {pair.accuracy_eager:.2f} % "
        f"top-1 accuracy and the reloaded TorchScript model {pair.accuracy_scripted:.2f} %: {check}. The two predict "
        f"a different class on {pair.disagreements} image(s), and the largest absolute difference between their "
        f"logits over the whole set is {pair.max_abs_difference:.3g}: the outputs are "
        f"{output_verdict(pair.max_abs_difference)}. Scripting compiles the same operators with the same weights, "
        "so equal predictions are what is expected; the check makes sure."
    )


# --- C10: latency ----------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySummary:
    """Statistics of per-call times, in milliseconds (C10's table and XC-2026's comparison)."""

    runs: int  # timed calls
    mean_ms: float
    median_ms: float
    std_ms: float  # sample standard deviation; 0 for a single run
    p5_ms: float  # 5th percentile (linear interpolation)
    p95_ms: float
    min_ms: float
    max_ms: float

    @property
    def spread(self) -> float:
        """p95 / p5: 1 on a quiet machine, large when other work interrupted the timing."""
        return self.p95_ms / self.p5_ms if self.p5_ms > 0 else math.inf

    @property
    def relative_std(self) -> float:
        """std / median."""
        return self.std_ms / self.median_ms if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def latency_summary(seconds: Sequence[float]) -> LatencySummary:
    """Summarise per-call times given in seconds (what lablib.core.timing.time_calls returns)."""
    ms = np.asarray(list(seconds), dtype=float) * 1000.0
    if ms.size == 0:
        raise LabError("no timed runs to summarise; use timed_runs >= 1.")
    return LatencySummary(
        runs=int(ms.size),
        mean_ms=float(ms.mean()),
        median_ms=float(np.median(ms)),
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        p5_ms=float(np.percentile(ms, 5)),
        p95_ms=float(np.percentile(ms, 95)),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
    )


def measure_latency(
    module: Callable[[torch.Tensor], torch.Tensor],
    example: torch.Tensor,
    device: torch.device,
    warmup_runs: int = 50,
    timed_runs: int = 200,
) -> LatencySummary:
    """Per-call latency of module(example) under no_grad, via lablib.core.timing.time_calls.

    time_calls synchronises the device before and after each timed call, so on
    a GPU each time is the kernels' completion, not their launch. `module` must
    already be in eval mode (prepare_runtimes does that).
    """
    if warmup_runs < 0 or timed_runs < 1:
        raise LabError(f"warmup_runs={warmup_runs}, timed_runs={timed_runs}; expected >= 0 and >= 1.")
    with torch.no_grad():
        seconds = time_calls(lambda: module(example), device, warmup_runs, timed_runs)
    return latency_summary(seconds)


def aoti_unavailable_reason(device: torch.device) -> str | None:
    """Why AOTInductor cannot be tried here, or None when it can."""
    import torch._inductor as inductor

    missing = [name for name in ("aoti_compile_and_package", "aoti_load_package") if not hasattr(inductor, name)]
    if missing:
        return f"torch {torch.__version__} has no torch._inductor.{', '.join(missing)}"
    if not any(shutil.which(compiler) for compiler in ("g++", "c++", "clang++")):
        return "no C++ compiler (g++/c++/clang++) on PATH; AOTInductor compiles the model to C++"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU visible"
    return None


def _short(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def prepare_runtimes(
    model: nn.Module, scripted_path: Path | str | None, device: torch.device, workdir: Path | str, aoti: bool = True
) -> dict[str, Any]:
    """Each runtime of RUNTIMES ready to call on `device`, or a "not available: reason" string.

    - PyTorch eager: a copy of `model` on the device;
    - TorchScript: the saved file reloaded with torch.jit.load (scripted now if no file);
    - torch.export: torch.export.export(...).module(), the exported ATen graph run by Python;
    - AOTInductor: the exported program compiled ahead of time into a .pt2 package in `workdir`
      and loaded with aoti_load_package.
    """
    example = torch.randn(SINGLE_IMAGE, device=device)
    eager = copy.deepcopy(model).to(device).eval()
    runtimes: dict[str, Any] = {"PyTorch eager": eager}
    try:
        runtimes["TorchScript"] = (
            load_scripted(scripted_path, device).module if scripted_path else script_model(copy.deepcopy(eager)).module
        )
    except Exception as error:  # a broken file or a TorchScript removal should not stop the table
        runtimes["TorchScript"] = f"not available: {_short(error)}"
    exported = None
    try:
        with torch.no_grad():
            exported = torch.export.export(eager, (example,))
        runtimes["torch.export"] = exported.module()
    except Exception as error:
        runtimes["torch.export"] = f"not available: {_short(error)}"
    reason = aoti_unavailable_reason(device) if aoti else "skipped (aoti parameter is False)"
    if reason is None and exported is None:
        reason = "torch.export failed, and AOTInductor compiles the exported program"
    if reason is None:
        try:
            import torch._inductor as inductor

            package = Path(workdir) / f"resnet18_aoti_{device.type}.pt2"
            package.parent.mkdir(parents=True, exist_ok=True)
            with captured_warnings():  # inductor's informational warnings are not the reader's concern
                path = inductor.aoti_compile_and_package(exported, package_path=str(package))
                runtimes["AOTInductor"] = inductor.aoti_load_package(path)
        except Exception as error:
            reason = _short(error)
    if reason is not None:
        runtimes["AOTInductor"] = (
            reason if reason.startswith(("not available", "skipped")) else f"not available: {reason}"
        )
    return runtimes


def latency_table(
    model: nn.Module,
    scripted_path: Path | str | None,
    devices: list[str],
    workdir: Path | str,
    warmup_runs: int = 50,
    timed_runs: int = 200,
    aoti: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Rows device x runtime: latency statistics in ms, speed-up vs eager, and a status.

    A device that is not present gets rows with status "not measured: ...".
    Every runtime's output is checked against eager (max_abs_diff column).
    """
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    bar = tqdm(total=len(devices) * len(RUNTIMES), desc="latency", disable=not progress)
    for name in devices:
        device = torch.device(name)
        base = {"device": device.type, "cpu_threads": threads, "warmup_runs": warmup_runs, "timed_runs": timed_runs}
        if device.type == "cuda" and not torch.cuda.is_available():
            rows += [
                {**base, "runtime": runtime, "status": "not measured: no CUDA GPU visible on this machine"}
                for runtime in RUNTIMES
            ]
            bar.update(len(RUNTIMES))
            continue
        runtimes = prepare_runtimes(model, scripted_path, device, workdir, aoti)
        check = torch.randn(SINGLE_IMAGE, device=device)
        for runtime in RUNTIMES:
            module = runtimes[runtime]
            bar.set_description(f"latency {device.type} {runtime}")
            if isinstance(module, str):
                rows.append({**base, "runtime": runtime, "status": module})
            else:
                difference = max_abs_difference(runtimes["PyTorch eager"], module, check)
                stats = measure_latency(
                    module, torch.randn(SINGLE_IMAGE, device=device), device, warmup_runs, timed_runs
                )
                measured = {**stats.to_dict(), "max_abs_diff": difference}
                measured.pop("runs")  # the timed_runs column
                rows.append({**base, "runtime": runtime, "status": "measured", **measured})
            bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    for column in ("mean_ms", "median_ms", "std_ms", "p5_ms", "p95_ms", "min_ms", "max_ms", "max_abs_diff"):
        if column not in table:
            table[column] = math.nan
    eager_mean = table[table.runtime == "PyTorch eager"].set_index("device")["mean_ms"]
    table["speedup_vs_eager"] = table["device"].map(eager_mean) / table["mean_ms"]
    order = [
        "device",
        "runtime",
        "status",
        "mean_ms",
        "median_ms",
        "std_ms",
        "p5_ms",
        "p95_ms",
        "min_ms",
        "max_ms",
        "speedup_vs_eager",
        "max_abs_diff",
        "cpu_threads",
        "warmup_runs",
        "timed_runs",
    ]
    return table[order]


def latency_devices(device: str) -> list[str]:
    """The devices C10 reports: "auto" -> cpu and cuda (cuda rows say so when absent)."""
    if device == "auto":
        return ["cpu", "cuda"]
    if device not in ("cpu", "cuda"):
        raise LabError(f"device={device!r}; expected auto, cpu or cuda.")
    return [device]


def latency_results(table: pd.DataFrame) -> dict[str, Any]:
    """The measured numbers of a latency table as flat record entries ("cpu TorchScript mean_ms": ...)."""
    results: dict[str, Any] = {}
    for row in table.to_dict("records"):
        prefix = f"{row['device']} {row['runtime']}"
        results[f"{prefix} status"] = row["status"]
        if row["status"] == "measured":
            for column in ("mean_ms", "median_ms", "std_ms", "p5_ms", "p95_ms", "speedup_vs_eager", "max_abs_diff"):
                results[f"{prefix} {column}"] = row[column]
    return results


def describe_latency(table: pd.DataFrame) -> list[str]:
    """One Markdown bullet per device: TorchScript vs eager, the fastest runtime, what was not measured."""
    lines = []
    for device, rows in table.groupby("device", sort=False):
        status = rows.set_index("runtime")["status"]
        done = rows[rows.status == "measured"].set_index("runtime")
        if done.empty:
            lines.append(f"- **{device}**: not measured ({status.iloc[0].removeprefix('not measured: ')}).")
            continue
        parts = []
        if {"TorchScript", "PyTorch eager"} <= set(done.index):
            parts.append(
                f"TorchScript {done.loc['TorchScript', 'mean_ms']:.3f} ms against eager "
                f"{done.loc['PyTorch eager', 'mean_ms']:.3f} ms, a speed-up of "
                f"{done.loc['TorchScript', 'speedup_vs_eager']:.2f}×"
            )
        best = done["mean_ms"].idxmin()
        parts.append(
            f"fastest is {best} ({done.loc[best, 'mean_ms']:.3f} ms mean, median "
            f"{done.loc[best, 'median_ms']:.3f} ms, {done.loc[best, 'speedup_vs_eager']:.2f}× eager)"
        )
        parts += [f"{runtime} {status[runtime]}" for runtime in rows.runtime if runtime not in done.index]
        lines.append(f"- **{device}**: " + "; ".join(parts) + ".")
    measured = table[table.status == "measured"]
    if len(measured):
        spread = measured.p95_ms / measured.p5_ms
        widest = measured.loc[spread.idxmax()]
        if spread.max() > NOISY_SPREAD:
            lines.append(
                f"- The spread is wide: on {widest.device} the 95th percentile of {widest.runtime} is "
                f"{spread.max():.1f}× its 5th, so the machine was not quiet while timing (other "
                "processes, frequency changes); compare medians, and rerun on an idle machine for firm "
                "numbers."
            )
    return lines


def c10_paragraphs(table: pd.DataFrame, cpu_name: str, gmacs: float) -> list[str]:
    """C10's conclusion: how it was timed, one bullet per device (describe_latency), what was not measured.

    `gmacs` is the model's GMACs per image (lablib.core.model.count_macs): small enough that per-operator
    overhead is a large share of a call.
    """
    cpu = table[table.device == "cpu"]
    threads = int(cpu.cpu_threads.iloc[0]) if len(cpu) else int(table.cpu_threads.iloc[0])
    head = (
        f"**C10:** mean single-image latency over {int(table.timed_runs.iloc[0])} timed runs after "
        f"{int(table.warmup_runs.iloc[0])} warm-up runs"
        + (f", CPU rows with {threads} intra-op thread(s) on {cpu_name}" if len(cpu) else "")
        + f". One {shape_text(SINGLE_IMAGE)} image costs ResNet-18 {gmacs:.2f} GMACs (counted by FlopCounterMode), "
        "little enough that per-operator overhead (Python dispatch, kernel launches on a GPU) is a large share of "
        "each call."
    )
    cuda = table[table.device == "cuda"]
    if len(cuda) and cuda.status.str.startswith("not measured").all():
        head += (
            " **No CUDA GPU is visible on this machine, so the GPU rows are not measured**; run this notebook on a "
            "GPU machine to fill them."
        )
    return [head, "\n".join(describe_latency(table))]
