"""lablib: the ResNet-18 / CIFAR-10 performance lab as a small, tested library.

One module per concern: config, model, data, optim, timing, train, runs,
provenance, report, cli. Importing lablib touches no GPU, disk or network.
"""

__version__ = "0.1.0"
