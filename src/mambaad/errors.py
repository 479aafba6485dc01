"""User-facing errors.

Anything a user can cause (a bad path, a corrupt image, a bad option, a truncated checkpoint) raises a
subclass of :class:`MambaADError`. The CLI prints its message as one line and exits non-zero; library
users catch it like any exception. Programming errors stay ordinary exceptions with tracebacks.
"""


class MambaADError(Exception):
    """A problem with the user's input; the message names the file or option and what is wrong."""


class DataError(MambaADError):
    """Unreadable, missing or inconsistent data on disk."""


class CheckpointError(MambaADError):
    """A checkpoint that is missing, truncated or of an unknown format."""


class ConfigError(MambaADError):
    """An unknown or ill-typed configuration key or command-line option."""
