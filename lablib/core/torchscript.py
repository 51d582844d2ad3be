"""The "torchscript" measurement: the base training's model scripted, saved, reloaded, compared, evaluated.

    training = training_request(config)                     # the lab's base training (C1, C2 ask for it too)
    request = torchscript_request(training)                 # its model, as TorchScript
    measured = obtain(request)                              # lablib.core.store
    measured.results["max_abs_difference"], measured.artifact(SCRIPTED_FILE)

One request serves three sections: C7 (torch.jit.script, torch.jit.save, torch.jit.load, then the eager
and the reloaded model's logits compared on a class-balanced sample of test images), C8 (the graph,
presented from the saved file: loading a file is not measuring) and C9 (test loss, top-1 and top-1 per
class of the eager model and of the reloaded TorchScript model, over the same test batches, compared
image by image). The model comes from the training named by its key in the settings (`source`), its
weights.pt loaded; the test set is the training's (its data source, subset and seed).

torch 2.13 deprecates TorchScript: torch.jit.script, .save and .load each raise a DeprecationWarning.
The lab still asks for TorchScript, so every step captures the warnings' text and records it.

The helpers here (captured_warnings, script_model, load_scripted, sample_images, ...) are what the
latency and libtorch measurements use too: one class-balanced sample picker, one way to script.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lablib.core.errors import ConfigError, LabError
from lablib.core.store import Measured, Request, Work

SCRIPTED_FILE = "model_scripted.pt"  # torch.jit.save of the scripted model
STATE_DICT_FILE = "model_state_dict.pt"  # the eager model's weights (CPU tensors)
COMPARE_IMAGES = 128  # class-balanced test images on which eager and reloaded TorchScript logits are compared
EVAL_BATCH = 1000  # test images per evaluation batch (the training's test loader uses the same)
STEPS = ("torch.jit.script", "torch.jit.save", "torch.jit.load")
SCRIPT_S = 10.0  # seconds to script, save and reload ResNet-18 and load the test set (the dry run's estimate)
EVAL_PASSES = 2  # the eager and the TorchScript evaluation, each one forward pass over the test set
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of a training step (forward, backward, update)
# Settings of the training that decide the test set the measurement evaluates on.
TEST_SETTINGS = ("data", "data_dir", "download", "limit_test", "seed")


# --- warnings --------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Record the distinct warnings raised in the block as "Category: text", in order.

    torch.jit.script warns once per scripted submodule (33 times for ResNet-18); one line per
    distinct text is what a reader needs. The list is filled when the block ends.
    """
    texts: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield texts
    for item in caught:
        text = f"{item.category.__name__}: {item.message}"
        if text not in texts:
            texts.append(text)


# --- script, save, reload --------------------------------------------------------------------


@dataclass
class Scripted:
    module: torch.jit.ScriptModule
    warnings: list[str]  # distinct "Category: text" lines the step raised


def script_model(model: nn.Module) -> Scripted:
    """torch.jit.script(model) in eval mode, with its warnings captured."""
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


# --- comparing two models' outputs -----------------------------------------------------------


@dataclass(frozen=True)
class OutputComparison:
    """How two models' logits on the same images compare."""

    images: int
    max_abs_difference: float  # largest |reference - candidate| over all logits (0.0: bitwise identical)
    disagreements: int  # images whose predicted class (argmax) differs

    @property
    def identical(self) -> bool:
        return self.max_abs_difference == 0.0


def compare_logits(reference: torch.Tensor, candidate: torch.Tensor) -> OutputComparison:
    """Compare two B x classes logit tensors of the same images."""
    if reference.shape != candidate.shape:
        raise LabError(
            f"logits of shape {tuple(reference.shape)} and {tuple(candidate.shape)} cannot be compared; "
            "they must come from the same images."
        )
    reference, candidate = reference.detach().double(), candidate.detach().double()
    difference = (reference - candidate).abs()
    return OutputComparison(
        int(reference.shape[0]),
        float(difference.max()) if difference.numel() else 0.0,
        int((reference.argmax(1) != candidate.argmax(1)).sum()),
    )


@torch.no_grad()
def max_abs_difference(reference, candidate, inputs: torch.Tensor) -> float:
    """max |reference(inputs) - candidate(inputs)| over all outputs (0.0 means bitwise identical).

    Both are called as they are: put nn.Modules in eval mode first (an exported module refuses .eval();
    it was exported in eval mode).
    """
    return (reference(inputs).float() - candidate(inputs).float()).abs().max().item()


class OutputRecorder(nn.Module):
    """Calls `model` and keeps its outputs (B x classes, detached), so that two evaluations over the same
    batches can be compared image by image without a third pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.model(x)
        self.outputs.append(outputs.detach().float())
        return outputs

    def logits(self) -> torch.Tensor:
        return torch.cat(self.outputs) if self.outputs else torch.zeros(0, 0)


# --- the one sample picker -------------------------------------------------------------------


def labels_of(dataset) -> list[int]:
    """Every item's label: the dataset's `targets` where it has them (CIFAR-10, image folders, subsets),
    else read item by item (FakeData)."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(label) for label in targets]
    return [int(dataset[index][1]) for index in range(len(dataset))]


def sample_images(dataset, count: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """`count` class-balanced images of a (test) dataset as one B x C x H x W tensor, and their labels.

    Class-balanced (lablib.core.data.balanced_indices, seeded), not the first `count`: a dataset
    sorted by class would otherwise give one class only. All of it when `count` >= its size.
    """
    from lablib.core.data import balanced_indices

    if count < 1:
        raise ConfigError(f"count={count}: need at least one image; pass a count >= 1.")
    if len(dataset) == 0:
        raise LabError("the test set is empty; pass a larger limit_test (or 0 for the whole test set).")
    indices = balanced_indices(labels_of(dataset), min(count, len(dataset)), seed).tolist()
    items = [dataset[index] for index in indices]
    return torch.stack([image for image, _ in items]), [int(label) for _, label in items]


# --- a measurement's source ------------------------------------------------------------------


def source_measurement(kind: str, key: str, keep: tuple[str, ...] = (), root: Path | None = None) -> Measured:
    """The newest complete measurement of `kind` recorded under `key`, with the files in `keep`.

    A request whose model comes from another measurement names it by its key (`source`); the section's
    planner lists that measurement first, so it is recorded by the time this one is measured.
    """
    import json

    from lablib.core.runs import effective_status
    from lablib.core.store import store_root

    found = []
    for meta_path in (store_root(root) / kind).glob(f"{key}-*/run.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        folder = meta_path.parent
        if meta.get("key") != key or effective_status(meta) != "complete":
            continue
        if all((folder / name).exists() for name in keep) and "request" in meta:
            found.append((meta.get("ended") or "", folder, meta))
    if not found:
        raise LabError(
            f"the {kind} measurement {key} this request takes its model from is not recorded (with "
            f"{', '.join(keep) or 'its files'}); obtain it first: the section lists it before this request."
        )
    _, folder, meta = max(found, key=lambda item: item[0])
    return Measured(Request.from_dict(meta["request"]), folder, meta, reused=True)


# --- the request -------------------------------------------------------------------------------


def torchscript_request(training: Request, compare_images: int = COMPARE_IMAGES) -> Request:
    """The TorchScript measurement of `training`'s model (which must keep its weights), on its device,
    evaluated on its test set; outputs compared on `compare_images` class-balanced test images."""
    if training.kind != "training":
        raise ConfigError(f"torchscript_request takes a training request; got a {training.kind!r} request.")
    if isinstance(compare_images, bool) or not isinstance(compare_images, int) or compare_images < 1:
        raise ConfigError(f"compare_images={compare_images!r} is not allowed; expected an integer >= 1 (e.g. 128).")
    settings = {
        "source": training.key,
        "device": training.settings.get("device", "cpu"),
        **{name: training.settings[name] for name in TEST_SETTINGS if name in training.settings},
        "compare_images": int(compare_images),
    }
    label = f"TorchScript of the {training.label or 'training'}"
    return Request("torchscript", settings, label=label, keep=(SCRIPTED_FILE, STATE_DICT_FILE))


# --- measuring ---------------------------------------------------------------------------------


def evaluation_data(settings):
    """The data bundle of a request's test settings (TEST_SETTINGS: source, folder, subset and seed)."""
    from lablib.core.data import load_data

    return load_data(
        str(settings["data"]),
        str(settings.get("data_dir", "")),
        bool(settings.get("download", True)),
        0,
        int(settings.get("limit_test", 0)),
        int(settings.get("seed", 0)),
    )


def evaluation_batches(dataset, device: torch.device, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The dataset in order as batches of EVAL_BATCH on `device`: decoded and moved once, so the two
    evaluations pass over the very same tensors."""
    from lablib.core.data import make_loader

    loader = make_loader(dataset, EVAL_BATCH, 0, device, shuffle=False, seed=seed)
    return [(inputs.to(device), targets.to(device)) for inputs, targets in loader]


def measure_torchscript(request: Request, record) -> None:
    """Script the source training's model, save and reload it, compare outputs, evaluate both models."""
    from lablib.core.train import evaluate, resolve_device
    from lablib.core.training import WEIGHTS, trained_model

    settings = request.settings
    training = source_measurement("training", str(settings["source"]), keep=(WEIGHTS,))
    device = resolve_device(str(settings.get("device", "cpu")))
    model = trained_model(training, device)
    data = evaluation_data(settings)
    batches = evaluation_batches(data.test, device, int(settings.get("seed", 0)))
    sample, sample_labels = sample_images(data.test, int(settings["compare_images"]), int(settings.get("seed", 0)))
    sample = sample.to(device)

    scripted = script_model(model)
    scripted_path, state_path = record.artifact(SCRIPTED_FILE), record.artifact(STATE_DICT_FILE)
    saved = save_scripted(scripted.module, scripted_path)
    save_state_dict(model, state_path)
    reloaded = load_scripted(scripted_path, device)
    with torch.no_grad():
        check = compare_logits(model(sample), reloaded.module(sample))

    eager, script = OutputRecorder(model), OutputRecorder(reloaded.module)
    eager_eval, script_eval = evaluate(eager, batches, device), evaluate(script, batches, device)
    whole = compare_logits(eager.logits(), script.logits())
    steps = dict(zip(STEPS, (scripted.warnings, saved, reloaded.warnings)))
    distinct = list(dict.fromkeys(line for lines in steps.values() for line in lines))
    record.log_results(
        scripted_file=SCRIPTED_FILE,
        state_dict_file=STATE_DICT_FILE,
        scripted_bytes=scripted_path.stat().st_size,
        state_dict_bytes=state_path.stat().st_size,
        compared_images=check.images,
        compared_labels=sample_labels,
        max_abs_difference=check.max_abs_difference,
        identical_outputs=check.identical,
        compared_disagreements=check.disagreements,
        warnings=steps,
        deprecation_warnings=distinct,
        classes=list(data.classes),
        test_images=eager_eval.images,
        per_class_images=list(eager_eval.per_class_images),
        eager=eager_eval.to_dict(),  # loss, accuracy, images, per_class, per_class_images
        scripted=script_eval.to_dict(),
        test_disagreements=whole.disagreements,
        test_max_abs_difference=whole.max_abs_difference,
        model_class=type(model).__name__,
        training_run=training.run_id,
        trained_epochs=len(training.epochs),
        trained_images=training.results.get("train_images"),
        torch_version=torch.__version__,
    )


def work_torchscript(request: Request) -> tuple[Work, ...]:
    """Scripting (fixed seconds) and the two evaluations: EVAL_PASSES forward passes over the test set, priced
    as the share of a training epoch over as many images that a forward pass costs."""
    from lablib.core.data import source_sizes

    settings = request.settings
    _, test = source_sizes(str(settings.get("data", "cifar10")))
    limit = int(settings.get("limit_test") or 0)
    images = min(limit, test) if limit and test else (limit or test)
    device = str(settings.get("device", "cpu"))
    return (
        Work(model="resnet18", device=device, fixed_s=SCRIPT_S),
        Work(model="resnet18", device=device, epochs=EVAL_PASSES * FORWARD_SHARE, images=images),
    )
