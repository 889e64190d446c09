"""Errors a user can cause. The CLI prints their message as one sentence and exits non-zero."""


class DcganError(Exception):
    """A problem with the user's input (a path, a flag, a file) rather than a bug in dcgan."""


class ConfigError(DcganError):
    """A configuration value is out of range or inconsistent."""


class DataError(DcganError):
    """A data set is missing, empty or unreadable."""


class CheckpointError(DcganError):
    """A checkpoint is missing, corrupt, unsafe or does not match the run."""
