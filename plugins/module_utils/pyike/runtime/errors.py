"""Exceptions as one line for logs and control answers."""

from __future__ import annotations

import os
import traceback

from ..config.errors import ConfigError
from .children import DataplaneError
from .control import ControlError


def describe_error(exc: BaseException) -> str:
    """An exception as one line that is never empty: its message, or its type and where it was
    raised (asyncio's and concurrent.futures' TimeoutError, for one, have no message)."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
        text = exc.strerror  # without the "[Errno N]" prefix; our own OSErrors say what failed
    if not text:
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        origin = ""
        if where:
            origin = " (raised in %s:%d, %s)" % (
                os.path.basename(where[0].filename),
                where[0].lineno,
                where[0].name,
            )
        return "%s without a message%s" % (type(exc).__name__, origin)
    if isinstance(exc, (OSError, ControlError, ConfigError, DataplaneError)):  # messages of our own
        return text
    return "%s: %s" % (type(exc).__name__, text)
