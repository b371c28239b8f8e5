"""The public name of advcal's one error family (defined in :mod:`advcal._core.errors`).

Catch :class:`AdvcalError` to catch every error advcal raises on purpose.
"""

from advcal._core.errors import (
    AdvcalError,
    ConfigError,
    DistributedError,
    FaultError,
    InputError,
    MissingDependencyError,
)

__all__ = ["AdvcalError", "ConfigError", "DistributedError", "FaultError", "InputError",
           "MissingDependencyError"]
