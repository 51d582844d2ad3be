"""lablib.core.switches: the parts of the lab turned off from the environment."""

import pytest

from lablib.core.errors import ConfigError
from lablib.core.switches import NO_CPU_COMPILE, switches


def test_no_cpu_compile_is_read_from_the_environment(monkeypatch):
    assert not switches({}).no_cpu_compile
    for value in ("1", "true", "YES", "on"):
        assert switches({NO_CPU_COMPILE: value}).no_cpu_compile
    for value in ("", "0", "false", "off"):
        assert not switches({NO_CPU_COMPILE: value}).no_cpu_compile
    monkeypatch.setenv(NO_CPU_COMPILE, "1")
    assert switches().no_cpu_compile


def test_a_value_that_is_not_a_switch_names_the_variable():
    with pytest.raises(ConfigError, match="LABLIB_NO_CPU_COMPILE='maybe' is not a switch"):
        switches({NO_CPU_COMPILE: "maybe"})
