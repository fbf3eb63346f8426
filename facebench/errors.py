"""User-facing errors: the CLI prints their message (which names the key, file or line and
the fix) and exits non-zero, without a traceback."""


class FacebenchError(Exception):
    """Base of every error whose message is meant for the user as it stands."""


class DataError(FacebenchError):
    """Missing or malformed data (a root, an image, a protocol file)."""


class ConfigError(FacebenchError, ValueError):
    """A config value that cannot work; the message names the key and the fix."""
