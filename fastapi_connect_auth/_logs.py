"""Access logs without tokens: page loads and iframe calls carry their JWT in `?jwt=`.

A logged token stays replayable until it expires, so the value of every `jwt`
query parameter is replaced before a record reaches any handler.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "RedactTokens", "redact_access_logs", "redact_tokens"]

REDACTED = "[redacted]"

_QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s\"]*)=(?P<value>[^&;#\s\"]*)")


def redact_tokens(text: str) -> str:
    """`text` with the value of each query parameter named `jwt` (however percent-encoded) replaced."""
    if "=" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if unquote_plus(match["name"]).strip().lower() != "jwt":
            return match[0]
        return f"{match['lead']}{match['name']}={REDACTED}"

    return _QUERY_PAIR.sub(replace, text)


class RedactTokens(logging.Filter):
    """A logging filter that removes `jwt=` values from a record's message and arguments.

    ```python
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    ```
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; always keep it."""
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                key: redact_tokens(value) if isinstance(value, str) else value for key, value in record.args.items()
            }
        return True


def redact_access_logs(logger: str = "uvicorn.access") -> RedactTokens:
    """Install `RedactTokens` on uvicorn's access logger (or `logger`), once; call it when the app starts.

    ```python
    app = FastAPI(lifespan=connect.lifespan)
    redact_access_logs()
    ```
    """
    target = logging.getLogger(logger)
    for existing in target.filters:
        if isinstance(existing, RedactTokens):
            return existing
    installed = RedactTokens()
    target.addFilter(installed)
    return installed
