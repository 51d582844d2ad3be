"""Where the project's folders are: the repository, the run store and the data folder.

The one place that knows the repository's layout. `runs_root` and `data_root`
honour LABLIB_RUNS_DIR / LABLIB_DATA_DIR, so a user (or a test) can put the
run store and the data cache anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # lablib/core/paths.py -> the repository
RUNS_ENV = "LABLIB_RUNS_DIR"
DATA_ENV = "LABLIB_DATA_DIR"


def runs_root() -> Path:
    """<repo>/runs, or $LABLIB_RUNS_DIR."""
    env = os.environ.get(RUNS_ENV)
    return Path(env) if env else REPO_ROOT / "runs"


def data_root() -> Path:
    """<repo>/data, or $LABLIB_DATA_DIR: torchvision's downloads and the decode cache."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else REPO_ROOT / "data"
