"""Exceptions that end a run with a recorded status instead of a crash."""


class RunFailed(RuntimeError):
    """Base class: the run ends, ``metrics.json`` records ``status`` and the message."""

    status = "failed"


class Diverged(RunFailed):
    """The training loss became NaN or infinite."""

    status = "diverged"


class SolverFailed(RunFailed):
    """An ODE/SDE solver passed its step cap (or could not meet its tolerance)."""

    status = "solver_failed"


class ConfigError(ValueError):
    """An invalid configuration or protocol; the message names the key (and line where known)."""


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or of the wrong shape; the message names the file."""
