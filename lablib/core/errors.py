"""The project's error types.

Every error a user can cause (a bad setting, a missing data path, a GPU asked
for on a machine without one) is a `LabError` whose message names the bad value,
what was expected and what to do. The CLI prints the message without a
traceback; notebooks show it as the cell's error.
"""


class LabError(Exception):
    """An error the user can fix; its message says how."""


class ConfigError(LabError, ValueError):
    """A setting has an unknown name, a wrong type or an out-of-range value."""


class DataError(LabError):
    """A data source is missing, unreadable or in the wrong layout."""


class DeviceError(LabError):
    """The requested device is not available on this machine."""
