"""`api_path`: a product API path built from a template, each parameter percent-encoded and checked.

An issue key, a page id or an account id often comes from a user, a webhook or a
FIT's context. Put into a path as it is, `..` walks up the API (`/rest/api/3/issue/../../..`),
`/` adds segments, `?` and `#` end the path, `%` survives to be decoded once more by a
proxy. `api_path` encodes every character that is not unreserved and refuses those
values outright, as Forge's own `route` template tag does.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from ._errors import UnsafeRequestError

__all__ = ["api_path"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_REFUSED = frozenset("/\\?#%")


def _segment(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"api_path: {name!r} must be a string or an integer")
    text = str(value)
    if (
        not text
        or text in (".", "..")
        or not _REFUSED.isdisjoint(text)
        or any(unicodedata.category(character).startswith("C") for character in text)
    ):
        raise UnsafeRequestError(
            f"api_path: {name!r} is not a safe path segment (empty, '.', '..', or holds / \\ ? # % or a control character)."
        )
    return quote(text, safe="")


def api_path(template: str, /, **params: str | int) -> str:
    """The path `template` with each `{name}` replaced by `params[name]`, percent-encoded as one path segment.

    ```python
    async with forge_product_client(call) as jira:
        await jira.post(api_path("/rest/api/3/issue/{key}/comment", key=issue_key), json=comment)
    ```

    A value that is empty, `.` or `..`, or holds `/`, `\\`, `?`, `#`, `%` or a
    control character is refused with `UnsafeRequestError` (a `ProductAPIError`,
    raised before anything is sent); a parameter the template does not name, or
    a placeholder without a value, is a `ValueError`. The template is yours: it
    must start with `/` and is kept as written.
    """
    if not template.startswith("/"):
        raise ValueError("api_path: the template is a path: it starts with '/'")
    literal = _PLACEHOLDER.sub("", template)
    if "{" in literal or "}" in literal:
        raise ValueError("api_path: the template has a brace that is not a {name} placeholder")
    named = _PLACEHOLDER.findall(template)
    missing, extra = set(named) - set(params), set(params) - set(named)
    if missing or extra:
        raise ValueError(
            f"api_path: placeholders {sorted(missing)} have no value, {sorted(extra)} are not in the template"
        )
    return _PLACEHOLDER.sub(lambda match: _segment(match[1], params[match[1]]), template)
