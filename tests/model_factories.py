"""Test factories for the measurements that take their model from a training (torchscript, latency, libtorch).

recorded_training(**settings)   a complete "training" measurement of ResNet-18 on FakeData with weights.pt
                                (a seeded, untrained model: nothing is trained), as the store would hold it
tiny_cnn()                      a 3 x 32 x 32 -> 10 model small enough to script, export and compile in seconds
"""

from __future__ import annotations

import dataclasses

import torch
from factories import record_measurement
from torch import nn

from lablib.core.config import make_config
from lablib.core.model import resnet18
from lablib.core.store import Measured, Request
from lablib.core.training import WEIGHTS, training_request

FAKE = {"data": "fake", "limit_train": 64, "limit_test": 40, "epochs": 1, "workers": 0, "device": "cpu"}


def recorded_training(**settings) -> tuple[Request, Measured]:
    """(the training request with its weights kept, its recorded measurement): ResNet-18 weights, no training."""
    request = dataclasses.replace(training_request(make_config(**{**FAKE, **settings})), keep=(WEIGHTS,))
    measured = record_measurement(
        dataclasses.replace(request, keep=()),
        results={"classes": [str(i) for i in range(10)], "model_class": "ResNet", "train_images": 64},
        epochs=[{"epoch": 1, "loss": 2.0, "accuracy": 20.0}],
    )
    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), measured.artifact(WEIGHTS))
    return request, measured


def tiny_cnn() -> nn.Module:
    """A model small enough that scripting, exporting and compiling it take seconds."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    ).eval()
