"""Typed user-facing errors: each message names the thing and the fix."""


class PeftStudioError(Exception):
    """Base of every error caused by user input (shown as a dialog / `error: ...`)."""


class ConfigError(PeftStudioError):
    """A method or base setting is out of range or unknown."""


class DatasetError(PeftStudioError):
    """A dataset file or built-in dataset cannot be used."""


class TrainingDiverged(PeftStudioError):
    """The loss became NaN or infinite."""


class AdapterFileError(PeftStudioError):
    """An adapter file is missing, malformed or does not match the model."""


class BaseLoadError(PeftStudioError):
    """A pretrained base folder is missing files or is not a BERT-style checkpoint."""


class RunStoreError(PeftStudioError):
    """A run folder or run file cannot be read or written."""
