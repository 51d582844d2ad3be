"""lablib.sections.setup: a notebook's preamble: parameters checked, measurements obtained, settings shown."""

import pytest
from factories import dummy_request, record_measurement

from lablib.core import store
from lablib.core.config import RunConfig, make_config
from lablib.core.errors import ConfigError
from lablib.core.store import NotMeasured, lookup
from lablib.sections import registry
from lablib.sections.registry import Needs, Presenter
from lablib.sections.setup import differences, notebook_parameters, realize, reuse_lines, setup

NOTEBOOK = {"device": "cpu", "data": "fake", "epochs": 1, "limit_train": 64, "limit_test": 32, "tag": "t"}


@pytest.fixture
def shown(monkeypatch):
    """What the preamble displays, in order (IPython's display replaced by a list)."""
    import IPython.display

    items = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: items.extend(objects))
    return items


@pytest.fixture
def dummy_section(monkeypatch, tmp_path):
    """A section "dummy_section" presenting two dummy measurements, the second only once the first is recorded."""
    monkeypatch.setitem(store.KINDS, "dummy", "factories")
    counter = tmp_path / "counter"

    def needs(params, recorded):
        first = dummy_request(params["epochs"], counter=str(counter))
        if recorded(first) is None:
            return Needs((first,), ("one at a time",), "the second follows the first")
        return Needs((first, dummy_request(params["epochs"] + 1, counter=str(counter))), ("both",))

    known = dict(registry.presenters())
    known["dummy_section"] = Presenter("dummy_section", ("D",), needs)
    monkeypatch.setattr(registry, "presenters", lambda: known)
    return counter


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


def test_the_parameters_are_the_notebooks_scalar_names():
    namespace = {**NOTEBOOK, "In": ["x"], "_": 3, "plt": object(), "warmup_runs": 10}
    assert notebook_parameters(namespace) == {**NOTEBOOK, "warmup_runs": 10}


def test_realize_measures_what_is_missing_round_by_round_then_reuses(dummy_section):
    needs, measured, here = realize(registry.presenter("dummy_section").needs, {"epochs": 1}, "dummy_section")
    assert [m.results["doubled"] for m in measured] == [2, 4] and len(here) == 2
    assert [m.reused for m in measured] == [False, False] and not needs.waiting
    again = realize(registry.presenter("dummy_section").needs, {"epochs": 1}, "dummy_section")
    assert [m.reused for m in again[1]] == [True, True] and again[2] == []
    assert len(dummy_section.read_text().splitlines()) == 2  # measured once each


def test_setup_records_what_it_presents_and_shows_the_notes_and_reuse(dummy_section, shown):
    record_measurement(dummy_request(1, counter=str(dummy_section)), results={"doubled": 2}, asked_by="c1_training")
    section = setup({**NOTEBOOK, "In": []}, "dummy_section")
    assert [m.reused for m in section.measured] == [True, False]
    assert [use["key"] for use in section.record.meta["uses"]] == [m.key for m in section.measured]
    texts = _texts(shown)
    assert "both" in texts and any(t.startswith("Reused, not measured again: dummy 1") for t in texts)
    assert any("for `c1_training`" in t for t in texts)
    section.finish(answer=42)
    assert section.record.meta["status"] == "complete" and section.record.results == {"answer": 42}


def test_in_the_presenting_step_a_missing_measurement_is_one_line(dummy_section, monkeypatch):
    monkeypatch.setenv(store.MODE_ENV, "reuse")
    with pytest.raises(NotMeasured, match="dummy 1 is not recorded"):
        setup({**NOTEBOOK, "In": []}, "dummy_section", show=False)


@pytest.mark.parametrize("namespace, field", [({"epochs": 0}, "epochs"), ({"workers": -2}, "workers")])
def test_a_bad_value_is_a_config_error_naming_the_field(namespace, field, dummy_section):
    with pytest.raises(ConfigError, match=field):
        setup({**NOTEBOOK, **namespace, "In": []}, "dummy_section", show=False)


def test_a_section_nobody_presents_is_named():
    with pytest.raises(Exception, match="no sections module presents 'c99'"):
        registry.presenter("c99")


def test_reuse_lines_name_who_asked_first_and_count_the_rest(dummy_section):
    record_measurement(dummy_request(5), results={"doubled": 10}, asked_by="c3_workers")
    found = lookup(dummy_request(5))
    assert reuse_lines([found], "c4_gpu_vs_cpu")[0].startswith("Reused, not measured again: dummy 5 (run `")
    assert "measured for `c3_workers`" in reuse_lines([found], "c4_gpu_vs_cpu")[0]
    for value in range(6, 12):
        record_measurement(dummy_request(value), results={"doubled": 2 * value}, asked_by="c3_workers")
    for value in range(20, 25):
        record_measurement(dummy_request(value), results={"doubled": 2 * value}, asked_by="e2_efficient_blocks")
    many = [lookup(dummy_request(v)) for v in [*range(5, 12), *range(20, 25)]]
    lines = reuse_lines(many, "e2_efficient_blocks")
    assert len(lines) == 5 and lines[3] == "Reused as well: 4 more measurements other sections asked for first."
    assert lines[4].startswith("Reused, not measured again: 5 measurements recorded earlier for this section (")
