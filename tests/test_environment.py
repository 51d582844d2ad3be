"""The environment the Makefile builds: pins agree, torchvision's compiled ops load."""

import re

import yaml
from conftest import REPO


def _pins(lines):
    return {
        m.group(1).lower(): m.group(2) for line in lines if (m := re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", line))
    }


def test_environment_yml_pins_equal_requirements():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    conda = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == requirements
    assert requirements["torch"] == "2.13.0" and requirements["torchvision"] == "0.28.0"


def test_torchvision_compiled_ops_load():
    import torch
    import torchvision

    keep = torchvision.ops.nms(torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1]]), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]


def test_importing_lablib_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import sys, lablib, lablib.core.config, lablib.core.runs, lablib.core.data, lablib.core.train, lablib.cli;"
        "print('torch.cuda' in sys.modules and __import__('torch').cuda.is_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
