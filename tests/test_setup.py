"""lablib.sections.setup: the notebook preamble (settings, device, data, what is shown, the worker choice)."""

import os

import pytest
import torch

from lablib.core.config import RunConfig, make_config
from lablib.core.data import DataBundle
from lablib.core.errors import ConfigError
from lablib.core.runs import start_run
from lablib.sections.analysis import LAB_WORKERS, DeviceChoice
from lablib.sections.setup import Setup, differences, setup, setup_best_workers, setup_next_workers
from lablib.sections.sweeps import c3_worker_candidates

# A notebook's globals after its parameters cell: settings, a section parameter and things that are neither.
NOTEBOOK = {"device": "cpu", "data": "fake", "epochs": 1, "limit_train": 64, "limit_test": 32, "tag": "t"}
FAKE_FINGERPRINT = "fake-64-32-0"  # FakeData's sizes and seed (lablib.core.data.load_data)


@pytest.fixture
def shown(monkeypatch):
    """What the preamble displays, in order (IPython's display replaced by a list)."""
    import IPython.display

    items = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: items.extend(objects))
    return items


def _texts(items) -> list[str]:
    return [item.data for item in items if hasattr(item, "data") and isinstance(item.data, str)]


def test_differences_show_only_what_differs_from_the_common_setup():
    assert differences(RunConfig()).empty
    table = differences(make_config(workers=4, epochs=1, data_dir="/elsewhere", download=False))
    assert table.columns.tolist() == ["setting", "this section", "common setup"]
    assert table.set_index("setting").to_dict("index") == {
        "workers": {"this section": 4, "common setup": 2},
        "epochs": {"this section": 1, "common setup": 5},
    }  # where the data lives is not a setting of the measurement


def test_setup_unpacks_into_config_data_device_and_shows_the_differences(shown):
    prepared = setup({**NOTEBOOK, "warmup_runs": 10, "In": [], "plt": object()})
    config, data, device = prepared
    assert isinstance(prepared, Setup) and prepared.workers is None and prepared.run_params() == {}
    assert (config.epochs, config.limit_train, config.data) == (1, 64, "fake")
    assert isinstance(data, DataBundle) and len(data.train) == 64 and data.fingerprint == FAKE_FINGERPRINT
    assert device == torch.device("cpu")
    assert "Settings that differ from the lab's common setup:" in _texts(shown)
    table = next(item for item in shown if hasattr(item, "data") and hasattr(item.data, "columns")).data
    assert set(table["setting"]) == {"device", "data", "epochs", "limit_train", "limit_test"}
    assert dict(zip(table["setting"], table["this section"]))["epochs"] == "1"  # as the setting is written
    assert 'data-lablib="presented"' in next(i for i in shown if hasattr(i, "to_html")).to_html()  # no index


def test_fixed_settings_override_the_parameters():
    namespace = {**NOTEBOOK, "batch_norm": True, "optimizer": "adam"}
    config, _, _ = setup(namespace, load=False, show=False, batch_norm=False, optimizer="sgd")
    assert config.batch_norm is False and config.optimizer == "sgd"


def test_load_false_gives_no_data_and_the_common_setup_says_so(shown):
    config, data, device = setup({"device": "cpu"}, load=False)
    assert data is None and device.type == "cpu" and config == make_config(device="cpu")
    setup({}, load=False)
    assert _texts(shown)[-1] == "Settings: the lab's common setup."


@pytest.mark.parametrize(
    "namespace, fixed, field",
    [
        ({"workers": "many"}, {}, "workers='many'"),
        ({"epochs": 0}, {}, "epochs=0"),
        ({}, {"optimizer": "adamax"}, "optimizer='adamax'"),
        ({"device": "tpu"}, {}, "device='tpu'"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_field(namespace, fixed, field):
    with pytest.raises(ConfigError, match=field.replace("(", r"\(")):
        setup({**NOTEBOOK, **namespace}, load=False, show=False, **fixed)


def _c3_point(workers, epoch_s_mean, data_s_total):
    config = make_config(data="fake", device="cpu", epochs=1, limit_train=64, limit_test=32, workers=workers)
    with start_run(
        "c3_workers", config, tag="t", device="cpu", sweep="workers", data={"fingerprint": FAKE_FINGERPRINT}
    ) as run:
        run.log_results(epoch_s_mean=epoch_s_mean, data_s_total=data_s_total)


def test_best_workers_come_from_c3s_records_else_the_lab_default(shown):
    first = setup_best_workers({**NOTEBOOK, "workers": -1})
    assert first.config.workers == LAB_WORKERS and first.workers.source == "lab default"
    assert first.run_params() == {"workers_requested": -1, "workers_source": "lab default"}
    assert _texts(shown)[0].startswith("This execution runs on `cpu` with the lab's default of 2 workers")
    for workers, seconds in ((0, 9.0), (4, 3.5), (8, 4.0)):
        _c3_point(workers, seconds, seconds / 3)
    config, data, device = prepared = setup_best_workers({**NOTEBOOK, "workers": -1}, batch_norm=False)
    assert (config.workers, config.batch_norm, prepared.workers.source) == (4, False, "c3")
    assert data.fingerprint == FAKE_FINGERPRINT and device.type == "cpu"
    table = [item.data for item in shown if hasattr(item, "data") and hasattr(item.data, "columns")][-1]
    assert table.set_index("setting").loc["workers", "this section"] == "4"  # the table shows the resolved count
    given = setup_best_workers({**NOTEBOOK, "workers": 3}, show=False)
    assert (given.config.workers, given.workers.source) == (3, "parameter")
    with pytest.raises(ConfigError, match="workers=-2"):
        setup_best_workers({**NOTEBOOK, "workers": -2}, show=False)


def test_best_workers_for_a_device_the_section_resolved_itself(shown):
    _c3_point(4, 3.5, 1.0)  # measured on the CPU: says nothing about the GPU
    missing = DeviceChoice("cuda", "cuda", None, "no GPU here")
    config, data, device = prepared = setup_best_workers({**NOTEBOOK, "device": "cuda", "workers": -1}, missing)
    assert _texts(shown)[0].startswith("This execution stands for the `cuda` point, not available here, with")
    assert device is None and config.device == "cuda" and data is not None
    assert (config.workers, prepared.workers.source) == (LAB_WORKERS, "lab default")
    cpu = DeviceChoice("cpu", "cpu", torch.device("cpu"), "")
    assert setup_best_workers({**NOTEBOOK, "workers": -1}, cpu, False).config.workers == 4


def test_next_workers_walk_c3s_rule_over_the_recorded_points():
    first = setup_next_workers({**NOTEBOOK, "workers": -1}, show=False)
    assert (first.config.workers, first.workers.source) == (0, "next")
    _c3_point(0, 9.0, 6.0)
    second = setup_next_workers({**NOTEBOOK, "workers": -1}, show=False)
    assert (second.config.workers, second.workers.source) == (c3_worker_candidates(os.cpu_count())[1], "next")
    assert "measured so far: [0]" in second.workers.reason
    given = setup_next_workers({**NOTEBOOK, "workers": 5}, show=False)
    assert (given.config.workers, given.run_params()["workers_source"]) == (5, "parameter")
