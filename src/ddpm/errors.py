"""Exception types of ``ddpm``.

Every error a user can cause (bad option, unknown data set, invalid schedule,
missing run directory) is raised as a :class:`DDPMError` subclass whose message
names the problem and the fix. The command line prints that message as one line
on stderr and exits non-zero.
"""


class DDPMError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(DDPMError, ValueError):
    """An option, preset or override is unknown or has an invalid value."""


class ScheduleError(ConfigError):
    """A noise schedule is invalid (a beta outside (0, 1), T < 1, ...)."""


class DataError(DDPMError, ValueError):
    """A data set is unknown, missing, or in a format that cannot be read."""


class RunError(DDPMError):
    """A run directory is missing, incomplete or does not match the request."""
