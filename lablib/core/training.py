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

A training may stop early and be continued (E1's successive halving):

    rung = training_request(config, stop_after=1)                    # epoch 1 of a config.epochs schedule
    more = training_request(config, stop_after=3, continue_from=1)   # epochs 2-3, from rung's checkpoint
    last = training_request(config, continue_from=3)                 # epochs 4..config.epochs: the whole training

`stop_after` is part of the key (epoch 1 of a 5-epoch cosine schedule is not a 1-epoch training);
`continue_from` is not (a continued training gives the epochs of one trained straight through, so the
last one has the key of a training never stopped). A training that stops before its schedule's end
keeps checkpoint.pt (lablib.core.checkpoint) while it may continue; the one that continues from it
deletes it once it has its own, and a finished or diverged training keeps none. `drop_checkpoints`
(keys, not in the key) names checkpoints the asker will never continue from (a setting a planner
stopped), deleted before this training starts, so a grid's disk use stays bounded. Without the
checkpoint a continuation trains from the start, with the same result; its record says so
(`resumed_from_epoch` 0).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lablib.core.config import PRECISIONS, RunConfig, make_config
from lablib.core.errors import ConfigError
from lablib.core.progress import counted
from lablib.core.store import Measured, Request, Work

if TYPE_CHECKING:
    from lablib.core.data import DataBundle

ENGINES = ("faithful", "fast")
CHECKPOINT = "checkpoint.pt"  # the state a stopped training continues from (lablib.core.checkpoint)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
MODELS = ("auto", "resnet18", "mobilenet_v2")  # auto: ResNet-18 for colour images, the small CNN for digits
WEIGHTS = "weights.pt"


_ASSUME_CUDA = contextvars.ContextVar("lablib_assume_cuda", default=False)


@contextlib.contextmanager
def assume_cuda():
    """Within the block, 'auto' and 'cuda' resolve to 'cuda' without a GPU: the report's dry run plans a
    GPU node's measurements on a machine without one (nothing is measured there)."""
    token = _ASSUME_CUDA.set(True)
    try:
        yield
    finally:
        _ASSUME_CUDA.reset(token)


def resolve_device_type(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without one is a DeviceError."""
    from lablib.core.train import resolve_device

    if _ASSUME_CUDA.get() and name in ("auto", "cuda"):
        return "cuda"
    return resolve_device(name).type


def network_of(settings: Mapping[str, Any]) -> str:
    """The network a training's settings build: its `model`; "auto" from its data's channels, read without
    decoding it (digits: the small CNN), or from its name when it cannot be read yet (a download to come)."""
    from lablib.core.data import source_shape

    model = str(settings.get("model", "auto"))
    if model != "auto":
        return model
    data = str(settings.get("data", "cifar10"))
    shape = source_shape(data)  # as build_model decides: one channel (digits) -> the small CNN
    digits = shape[0] == 1 if shape is not None else "mnist" in data.lower()
    return "small_cnn" if digits else "resnet18"


def fast_defaults(device_type: str, model: str = "resnet18") -> dict[str, Any]:
    """The fast engine on this device: bf16 autocast where the device has it, channels_last, compiled on a GPU
    (not the small CNN: a whole MNIST training of it takes a few seconds on a GPU, less than its compile)."""
    cuda = device_type == "cuda"
    # Planned as on a GPU node without one (the dry run): the named GPUs (L4, A100, H100) all have bf16.
    bf16 = cuda and (_ASSUME_CUDA.get() or (torch.cuda.is_available() and torch.cuda.is_bf16_supported()))
    compile = "default" if cuda and model != "small_cnn" else "none"
    return {"precision": "bf16" if bf16 else "fp32", "channels_last": True, "compile": compile}


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
    stop_after: int | None = None,
    continue_from: int = 0,
    drop_checkpoints: Sequence[str] = (),
) -> Request:
    """The measurement of training `config` (its device resolved) with these choices.

    For the fast engine, precision / compile / channels_last default to fast_defaults(device); the
    config's precision is used as given when it is not fp32, and `precision` when given (fp32 too:
    a comparison of precisions on a GPU). `timing` (the default) asks for a run that had the machine
    to itself. `stop_after` (1 .. config.epochs) ends the training after that epoch of its
    config.epochs schedule; `continue_from` (0 .. stop - 1) continues the same training's checkpoint
    after that epoch; `drop_checkpoints`: see the module docstring.
    """
    from lablib.core.optim import SCHEDULERS

    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is unknown; expected one of {', '.join(ENGINES)}.")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler={scheduler!r} is unknown; expected one of {', '.join(SCHEDULERS)}.")
    if model not in MODELS:
        raise ConfigError(f"model={model!r} is unknown; expected one of {', '.join(MODELS)}.")
    settings = {**run_settings(config), "scheduler": scheduler, "engine": engine, "model": model}
    device = settings["device"]
    if model == "mobilenet_v2":
        settings["width"] = float(width)
    if engine == "fast":
        # The fast engine reads no DataLoader: its workers and pinned memory decide nothing.
        settings.update(workers=0, pin_memory=False, persistent_workers=False)
        defaults = fast_defaults(device, network_of(settings))
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
    settings.update(_stopping(config.epochs, stop_after, continue_from, drop_checkpoints))
    return Request("training", settings, timing=timing, label=label or training_label(settings))


def run_settings(config: RunConfig) -> dict[str, Any]:
    """A RunConfig as a measurement's settings: its device resolved ("cuda" / "cpu") and a data path made
    absolute, so the same run asked from two folders or as "auto" and "cuda" is one key."""
    settings = {**config.to_dict(), "device": resolve_device_type(config.device)}
    if isinstance(settings.get("data"), str) and settings["data"] not in ("cifar10", "mnist", "fake"):
        settings["data"] = str(Path(settings["data"]).expanduser().resolve())
    return settings


def _stopping(epochs: int, stop_after: int | None, continue_from: int, drop: Sequence[str]) -> dict[str, Any]:
    """The stop/continue settings of a request, checked; the whole training (stop_after = epochs) has none."""
    stop = epochs if stop_after is None else int(stop_after)
    if not 1 <= stop <= epochs:
        raise ConfigError(f"stop_after={stop_after} is not allowed; expected 1 .. {epochs} (the schedule's epochs).")
    if not 0 <= int(continue_from) < stop:
        raise ConfigError(
            f"continue_from={continue_from} is not allowed; expected 0 (from the start) .. {stop - 1} "
            "(an epoch before the training stops)."
        )
    settings: dict[str, Any] = {}
    if stop < epochs:
        settings["stop_after"] = stop
    if continue_from:
        settings["continue_from"] = int(continue_from)
    if drop:
        settings["drop_checkpoints"] = sorted({str(key) for key in drop})
    return settings


def training_label(settings: Mapping[str, Any]) -> str:
    """A training request in words: 'training sgd lr 0.1, 4 workers, 5 epochs on cuda'."""
    what = settings.get("model", "auto")
    if what == "auto":  # the lab's ResNet-18 goes unnamed; the small CNN (MNIST) is named
        what = "small CNN " if network_of(settings) == "small_cnn" else ""
    else:
        what = f"{what}{'' if what != 'mobilenet_v2' else ' ×' + format(settings['width'], 'g')} "
    engine = "" if settings.get("engine", "faithful") == "faithful" else f", {settings['engine']} engine"
    schedule = "" if settings.get("scheduler", "none") == "none" else f" {settings['scheduler']}"
    norm = "" if settings.get("batch_norm", True) else ", no BatchNorm"
    precision = "" if settings.get("precision", "fp32") == "fp32" else f" {settings['precision']}"
    epochs = counted(settings["epochs"], "epoch")
    if settings.get("stop_after"):
        first = "epoch 1" if settings["stop_after"] == 1 else f"epochs 1-{settings['stop_after']}"
        epochs = f"{first} of {settings['epochs']}"
    if settings.get("continue_from"):
        epochs += f" (continued after epoch {settings['continue_from']})"
    return (
        f"training {what}{settings['optimizer']} lr {settings['lr']:g}{schedule}{norm}, "
        f"{counted(settings['workers'], 'worker')}, "
        f"{epochs}{precision} on {settings['device']}{engine}"
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


def data_and_model(settings: Mapping[str, Any], config: RunConfig) -> tuple[DataBundle, nn.Module]:
    """The set-up every measurement that trains shares: its data loaded, the seed set, then its model built (after
    the seed, so the seed decides the model's first weights)."""
    from lablib.core.data import load_data_for
    from lablib.core.train import seed_everything

    data = load_data_for(config)
    seed_everything(config.seed)
    return data, build_model(settings, data.channels, len(data.classes))


def data_and_model_results(data: DataBundle, model: nn.Module) -> dict[str, Any]:
    """What a profile's or a compiled training's record says of its set-up (data_and_model): the model's class,
    the training and test images and the data's fingerprint."""
    return {
        "model_class": type(model).__name__,
        "train_images": len(data.train),
        "test_images": len(data.test),
        "data_fingerprint": data.fingerprint,
    }


def measure_training(request: Request, record) -> None:
    """Train as the request says, into `record` (a lablib.core.runs.Run): epochs, results, weights.

    Besides the training's results: wall_s (the whole measurement: data to the device, warm-up, the
    epochs trained here, the test, the checkpoint), resumed_from_epoch / resumed_from_run (where a
    continued training took over; 0 / "" from the start) and checkpoint_kept.
    """
    from lablib.core import checkpoint
    from lablib.core.timing import Stopwatch
    from lablib.core.train import train, training_results

    settings = request.settings
    config = config_of(settings)
    earlier = continued_from(request)  # (the recorded training it continues, its checkpoint path) or None
    drop_checkpoints(settings.get("drop_checkpoints", ()), keep=earlier[0].key if earlier else "")
    with Stopwatch() as wall:  # the loop synchronises the device at each epoch's end, the test reads back
        data, model = data_and_model(settings, config)
        resume = checkpoint.load(earlier[1]) if earlier else None
        for row in resume["epochs"] if resume else ():
            record.log_epoch(row)  # the continued record holds the whole training
        stop_after = settings.get("stop_after")
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
                stop_after=stop_after,
                resume=resume,
            )
            own = {
                **result.compile_log.results(),  # compile_s, compiles, recompiles, ... from torch's compile events
                "warmup_s": result.warmup_s,
                "compiled": result.compiled,
                "cuda_graphs": result.cuda_graphs,
            }
        else:
            result = train(
                config,
                run=record,
                model=model,
                data=data,
                evaluate_test=True,
                scheduler=settings.get("scheduler", "none"),
                stop_after=stop_after,
                resume=resume,
            )
            own = {}
        if result.checkpoint is not None:
            checkpoint.save(result.checkpoint, record.artifact(CHECKPOINT))
        if settings.get("save_weights", True):
            state = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
            torch.save(state, record.artifact(WEIGHTS))
    record.log_results(
        **training_results(result.epochs, result.test),
        **own,
        model_class=type(model).__name__,
        classes=list(data.classes),
        train_images=len(data.train),
        data_fingerprint=data.fingerprint,
        wall_s=wall.seconds,
        resumed_from_epoch=int(resume["epoch"]) if resume else 0,
        resumed_from_run=earlier[0].run_id if earlier else "",
        checkpoint_kept=result.checkpoint is not None,
    )
    if earlier:
        earlier[1].unlink(missing_ok=True)  # superseded: this training carries on from here, or has finished


def earlier_request(request: Request, epochs: int) -> Request:
    """The same training stopped after `epochs` (the request a continuation takes over from)."""
    settings = {k: v for k, v in request.settings.items() if k not in ("continue_from", "drop_checkpoints")}
    settings["stop_after"] = int(epochs)
    return Request("training", settings, label=training_label(settings))


def continued_from(request: Request) -> tuple[Measured, Path] | None:
    """The recorded training a request continues (its `continue_from`) and its checkpoint, when both exist."""
    from lablib.core.store import lookup

    epochs = int(request.settings.get("continue_from") or 0)
    if epochs <= 0:
        return None
    earlier = lookup(earlier_request(request, epochs))
    if earlier is None or not earlier.artifact(CHECKPOINT).is_file():
        return None
    return earlier, earlier.artifact(CHECKPOINT)


def drop_checkpoints(keys: Sequence[str], keep: str = "") -> int:
    """Delete the checkpoints of the training measurements `keys` (every recorded attempt); bytes freed."""
    from lablib.core.store import store_root

    freed = 0
    for key in keys:
        if key == keep:
            continue
        for path in (store_root() / "training").glob(f"{key}-*/{CHECKPOINT}"):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    return freed


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
    model = network_of(settings)
    mode = str(settings.get("compile", "none"))
    # The epochs this measurement trains: up to its stop, after the checkpoint it continues.
    epochs = int(settings.get("stop_after") or settings.get("epochs", 5)) - int(settings.get("continue_from") or 0)
    return (
        Work(
            model=model,
            device=str(settings.get("device", "cpu")),
            epochs=float(epochs),
            images=images,
            batch=int(settings.get("batch_size", 128)),
            engine=str(settings.get("engine", "faithful")),
            precision=str(settings.get("precision", "fp32")),
            workers=int(settings.get("workers", 0)),
            width=float(settings.get("width", 1.0)),
            compiles=() if mode == "none" else (mode,),
        ),
    )
