import warnings

import torch
from torch import nn

from lablib.core.model import SmallCNN, count_modules, count_parameters, resnet18


def test_parameter_counts_match_the_lab():
    assert count_parameters(resnet18()) == 11_173_962
    assert count_parameters(resnet18(batch_norm=False)) == 11_164_362


def test_shapes_and_layers():
    model = resnet18().eval()
    images = torch.randn(2, 3, 32, 32)
    assert model.features(images).shape == (2, 512, 4, 4)
    assert model(images).shape == (2, 10)
    assert count_modules(model, nn.Conv2d) == 20  # 17 + 3 shortcut projections
    assert count_modules(resnet18(batch_norm=False), nn.BatchNorm2d) == 0
    assert model.fc.in_features == 512
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_scripts_and_matches_eager():
    model = resnet18().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), scripted(images), atol=1e-5)


def test_small_cnn_for_mnist():
    assert SmallCNN()(torch.randn(3, 1, 28, 28)).shape == (3, 10)
