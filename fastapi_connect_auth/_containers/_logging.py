"""`ForgeInvocationLogFilter`: each log record of a request gets its invocation's `forge_invocation` attributes.

Forge asks containers to log `x-forge-invocation-log-attributes` (base64 JSON:
`id`, `ctx`, `traceId`) under the JSON key `forge_invocation`. The header comes
from the wire (a web trigger's caller writes it), so only short printable strings
of those keys are kept.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from contextvars import ContextVar

from .._json import loads

__all__ = ["ForgeInvocationLogFilter", "current_log_attributes", "decode_log_attributes"]

_KEYS = ("id", "ctx", "traceId")
_MAX_HEADER = 4096
_MAX_VALUE = 512

current_log_attributes: ContextVar[Mapping[str, str] | None] = ContextVar("forge_invocation", default=None)
"""The log attributes of the invocation being served (set by `ForgeContainerRequest`)."""


def decode_log_attributes(value: str | None) -> Mapping[str, str] | None:
    """`x-forge-invocation-log-attributes` decoded: its `id`, `ctx` and `traceId` strings; `None` if unreadable."""
    if not value or len(value) > _MAX_HEADER:
        return None
    try:
        document = loads(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(document, dict):
        return None
    kept = {
        key: text
        for key in _KEYS
        if isinstance(text := document.get(key), str) and len(text) <= _MAX_VALUE and text.isprintable()
    }
    return kept or None


class ForgeInvocationLogFilter(logging.Filter):
    """Add `forge_invocation` (a dict, or `None` outside an invocation) to every record it sees.

    ```python
    handler.addFilter(ForgeInvocationLogFilter())  # a JSON formatter then writes record.forge_invocation
    ```
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Set `record.forge_invocation`; never drops a record."""
        attributes = current_log_attributes.get()
        record.forge_invocation = dict(attributes) if attributes is not None else None
        return True
