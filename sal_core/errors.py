"""One exception type per kind of user mistake, so the CLI can print one clear line instead of a traceback."""


class SalError(Exception):
    """Base class: anything the user can fix (config, dataset, model path, corrupt file)."""


class ConfigError(SalError):
    """A config key has a value that is not allowed; the message names the key."""


class DatasetError(SalError):
    """A dataset is missing, unreadable, or lacks a configured field; the message names it."""


class ModelError(SalError):
    """A model or PRM path cannot be found or loaded."""


class ShardError(SalError):
    """A shard file is missing, corrupt, incomplete or overlaps another."""


class ServerError(SalError):
    """A model or PRM server is unreachable, serves another model, or answers something unusable; the
    message names its URL (and the service file it came from)."""
