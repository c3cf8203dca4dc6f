"""Errors a user can cause. The CLI turns any ``UserError`` into one sentence and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, wrong key); the message says how."""


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid."""


class UnknownNameError(UserError, KeyError):
    """A name looked up in a registry does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(UserError):
    """Dataset files are missing or a split/forget spec does not fit the data."""


class InputError(ConfigError, DataError):
    """An input file cannot be read as text (missing, a folder, not UTF-8). Whatever the file holds
    (a config, a study, a deletion request), callers that expect a ConfigError or a DataError catch it."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or does not match what it is used for."""


class OutputError(UserError):
    """An output file or folder cannot be written (read-only, missing folder, full disk, same as an input)."""


class TrainingDiverged(UserError, FloatingPointError):
    """Training's loss became NaN/inf (the fix: a smaller learning rate); a FloatingPointError too."""


class ModelError(UserError):
    """A model does not fit how it is used: it cannot be built, cannot take the data's images,
    returns the wrong shape, or has no penultimate features a method needs."""
