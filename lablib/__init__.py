"""lablib: the ResNet-18 / CIFAR-10 performance lab as a small, tested library.

Four layers, each a folder; imports only point down (tests/test_layers.py checks):

    lablib/core/      settings, data, models, optimisers, timing, the training loop, run store
    lablib/sections/  what each lab section computes and the sentences it writes
    lablib/report/    plan, point keys, papermill jobs, executors, build, stitching
    lablib/cli.py     `python -m lablib ...` on top (and bench.py, `make bench`)

Importing lablib touches no GPU, disk or network.
"""

__version__ = "0.1.0"
