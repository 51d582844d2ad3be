"""The core layer: what every measurement stands on (its code is in every measurement's key).

    store        measurements: Request (kind, settings) -> key; lookup / obtain / measure; each kind's work
    training     "training": one model trained with one set of settings, on the faithful or fast engine
    train        the lab's one training loop (train_epoch, hooks), divergence;  checkpoint  between epochs
    fastpath     the fast engine: data and augmentation on the device, bf16, channels_last, compiled
    compiled     "compiled_training";  compiles  compile events counted and timed
    counts       "counts": FLOPs (torch.utils.flop_counter), parameters, GPUs' datasheet peaks
    torchscript  "torchscript";  latency  "latency";  libtorch  "libtorch";  profiler  "profile"
    inference    E2's timings, layer profiles and busy fractions
    model, mobilenet   the lab's ResNet-18, the small CNN, MobileNetV2
    config, data, optim    settings, data sources and loaders, optimisers and schedules
    timing       the only clocks and the one rule for a noisy spread
    runs         record folders written atomically, complete only at the end;  provenance  versions
    paths, errors, progress, wheels (the torch build the driver runs), preflight, switches

Modules here import only each other: nothing in the core knows about a lab section, a notebook or
the report.
"""
