"""The "training" measurement: one model trained with one set of settings, its epochs and test figures.

    request = training_request(config)                        # the lab's loop, timed (C1, C2, C3, ...)
    request = training_request(config, engine="fast", ...)    # the fast engine (E1's grids, E2, X-FAST)
    measured = obtain(request)                                # lablib.core.store
    measured.epochs, measured.results["test_accuracy"], trained_model(measured)

Engines: "faithful" is the lab's loop (lablib.core.train: DataLoader workers, the lab's timing per
step); "fast" is lablib.core.fastpath (data and augmentation on the device, autocast, channels_last,
compiled on a GPU). Every training ends with the test set evaluated (loss, top-1, top-1 per class),
after the timed epochs, and the final weights saved as weights.pt (unless `save_weights` is off, as
for a grid's many points).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lablib.core.config import PRECISIONS, RunConfig, make_config
from lablib.core.errors import ConfigError
from lablib.core.store import Measured, Request, Work

ENGINES = ("faithful", "fast")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
MODELS = ("auto", "resnet18", "mobilenet_v2")  # auto: ResNet-18 for colour images, the small CNN for digits
WEIGHTS = "weights.pt"


def resolve_device_type(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without one is a DeviceError."""
    from lablib.core.train import resolve_device

    return resolve_device(name).type


def fast_defaults(device_type: str) -> dict[str, Any]:
    """The fast engine on this device: bf16 autocast where the device has it, channels_last, compiled on a GPU."""
    cuda = device_type == "cuda"
    bf16 = cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return {"precision": "bf16" if bf16 else "fp32", "channels_last": True, "compile": "default" if cuda else "none"}


def training_request(
    config: RunConfig,
    *,
    scheduler: str = "none",
    engine: str = "faithful",
    model: str = "auto",
    width: float = 1.0,
    compile: str | None = None,
    channels_last: bool | None = None,
    precision: str | None = None,
    timing: bool = True,
    save_weights: bool = True,
    label: str = "",
) -> Request:
    """The measurement of training `config` (its device resolved) with these choices.

    For the fast engine, precision / compile / channels_last default to fast_defaults(device); the
    config's precision is used as given when it is not fp32, and `precision` when given (fp32 too:
    a comparison of precisions on a GPU). `timing` (the default) asks for a run that had the machine
    to itself.
    """
    from lablib.core.optim import SCHEDULERS

    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is unknown; expected one of {', '.join(ENGINES)}.")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler={scheduler!r} is unknown; expected one of {', '.join(SCHEDULERS)}.")
    if model not in MODELS:
        raise ConfigError(f"model={model!r} is unknown; expected one of {', '.join(MODELS)}.")
    device = resolve_device_type(config.device)
    settings = {**config.to_dict(), "device": device, "scheduler": scheduler, "engine": engine, "model": model}
    if model == "mobilenet_v2":
        settings["width"] = float(width)
    if engine == "fast":
        defaults = fast_defaults(device)
        if config.precision != "fp32":
            defaults["precision"] = config.precision
        if precision is not None:
            if precision not in PRECISIONS:
                raise ConfigError(f"precision={precision!r} is unknown; expected one of {', '.join(PRECISIONS)}.")
            defaults["precision"] = precision
        settings.update(precision=defaults["precision"])
        settings["compile"] = compile if compile is not None else defaults["compile"]
        settings["channels_last"] = defaults["channels_last"] if channels_last is None else bool(channels_last)
        if settings["compile"] not in COMPILE_MODES:
            raise ConfigError(
                f"compile={settings['compile']!r} is unknown; expected one of {', '.join(COMPILE_MODES)}."
            )
    settings["save_weights"] = save_weights
    if isinstance(settings.get("data"), str) and settings["data"] not in ("cifar10", "mnist", "fake"):
        from pathlib import Path

        settings["data"] = str(Path(settings["data"]).expanduser().resolve())
    return Request("training", settings, timing=timing, label=label or training_label(settings))


def training_label(settings: Mapping[str, Any]) -> str:
    """A training request in words: 'training sgd lr 0.1, 4 workers, 5 epochs on cuda'."""
    what = settings.get("model", "auto")
    what = "" if what == "auto" else f"{what}{'' if what != 'mobilenet_v2' else ' ×' + format(settings['width'], 'g')} "
    engine = "" if settings.get("engine", "faithful") == "faithful" else f", {settings['engine']} engine"
    schedule = "" if settings.get("scheduler", "none") == "none" else f" {settings['scheduler']}"
    norm = "" if settings.get("batch_norm", True) else ", no BatchNorm"
    precision = "" if settings.get("precision", "fp32") == "fp32" else f" {settings['precision']}"
    return (
        f"training {what}{settings['optimizer']} lr {settings['lr']:g}{schedule}{norm}, {settings['workers']} workers, "
        f"{settings['epochs']} epoch(s){precision} on {settings['device']}{engine}"
        + (f", seed {settings['seed']}" if settings.get("seed") else "")
        + (f", {settings['limit_train']:,} images" if settings.get("limit_train") else "")
    )


def config_of(settings: Mapping[str, Any]) -> RunConfig:
    """The RunConfig a training request's settings hold."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return make_config(**{k: v for k, v in settings.items() if k in names})


def build_model(settings: Mapping[str, Any], channels: int, classes: int) -> nn.Module:
    """The model a training's settings name (auto: ResNet-18 for colour images, the small CNN for digits)."""
    from lablib.core.mobilenet import mobilenet_v2
    from lablib.core.model import SmallCNN, resnet18

    name = settings.get("model", "auto")
    if name == "mobilenet_v2":
        return mobilenet_v2(classes, width=float(settings.get("width", 1.0)), in_channels=channels)
    if name == "auto" and channels == 1:
        return SmallCNN(classes, in_channels=1)
    return resnet18(classes, batch_norm=bool(settings.get("batch_norm", True)), in_channels=channels)


def measure_training(request: Request, record) -> None:
    """Train as the request says, into `record` (a lablib.core.runs.Run): epochs, results, weights."""
    from lablib.core.data import load_data_for
    from lablib.core.train import seed_everything, train, training_results

    settings = request.settings
    config = config_of(settings)
    data = load_data_for(config)
    seed_everything(config.seed)
    model = build_model(settings, data.channels, len(data.classes))
    engine = settings.get("engine", "faithful")
    if engine == "fast":
        from lablib.core.fastpath import train_fast

        mode = settings.get("compile", "none")
        result = train_fast(
            config,
            data=data,
            run=record,
            model=model,
            compile=mode != "none",
            cuda_graphs=mode == "reduce-overhead",
            channels_last=bool(settings.get("channels_last", True)),
            scheduler=settings.get("scheduler", "none"),
        )
        own = {"compile_s": result.compile_s, "compiled": result.compiled, "cuda_graphs": result.cuda_graphs}
    else:
        result = train(
            config, run=record, model=model, data=data, evaluate_test=True, scheduler=settings.get("scheduler", "none")
        )
        own = {}
    record.log_results(
        **training_results(result.epochs, result.test),
        **own,
        model_class=type(model).__name__,
        classes=list(data.classes),
        train_images=len(data.train),
        data_fingerprint=data.fingerprint,
    )
    if settings.get("save_weights", True):
        state = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
        torch.save(state, record.artifact(WEIGHTS))


def trained_model(measured: Measured, device: torch.device | str = "cpu") -> nn.Module:
    """The trained model of a training measurement, in eval mode on `device` (its weights.pt loaded)."""
    from lablib.core.errors import LabError

    path = measured.artifact(WEIGHTS)
    if not path.is_file():
        raise LabError(
            f"the training {measured.run_id} kept no weights ({path} is missing); ask for it with save_weights on."
        )
    results = measured.results
    classes = len(results.get("classes") or []) or 10
    channels = 1 if results.get("model_class") == "SmallCNN" else 3
    model = build_model(measured.request.settings, channels, classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def work_training(request: Request) -> tuple[Work, ...]:
    """One training's cost: its model, device, epochs, images per epoch (the subset's), engine and compile."""
    from lablib.core.data import source_sizes

    settings = request.settings
    train, _ = source_sizes(str(settings.get("data", "cifar10")))
    images = min(int(settings.get("limit_train") or train), train) if train else int(settings.get("limit_train") or 0)
    model = str(settings.get("model", "auto"))
    if model == "auto":
        model = (
            "small_cnn"
            if str(settings.get("data")) == "mnist" or "mnist" in str(settings.get("data")).lower()
            else "resnet18"
        )
    mode = str(settings.get("compile", "none"))
    return (
        Work(
            model=model,
            device=str(settings.get("device", "cpu")),
            epochs=float(settings.get("epochs", 5)),
            images=images,
            engine=str(settings.get("engine", "faithful")),
            precision=str(settings.get("precision", "fp32")),
            workers=int(settings.get("workers", 0)),
            width=float(settings.get("width", 1.0)),
            compiles=() if mode == "none" else (mode,),
        ),
    )
