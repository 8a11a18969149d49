"""The query string hash (`qsh`): Atlassian's canonical request and its SHA-256.

Pure functions with no web-framework import, shared by inbound verification,
outbound signing and the test kit, so there is exactly one canonicalisation.

The rules follow Atlassian's reference implementation (`atlassian-jwt`):

* method upper-cased;
* path relative to the path of the app's (or product's) base URL, with `&`
  percent-encoded, the trailing slash dropped and an empty path written `/`;
* query without `jwt`; `+` decoded as a space; keys sorted; the values of a
  repeated key sorted and joined with `,`; keys and values percent-encoded per
  RFC 3986 (everything but `A-Z a-z 0-9 - . _ ~`); a key without a value kept as
  `key=`. Sorting compares UTF-16 code units, as JavaScript and Java do, so
  that astral characters (emoji) sort as they do there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, unquote_plus, urlsplit

__all__ = [
    "CONTEXT_QSH",
    "canonical_path",
    "canonical_query",
    "canonical_request",
    "parse_query",
    "query_string_hash",
]

CONTEXT_QSH = "context-qsh"
"""The fixed `qsh` of tokens made by `AP.context.getToken()`."""


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_ASCII_ESCAPES = {code: f"%{code:02X}" for code in range(128) if not _UNRESERVED.fullmatch(chr(code))}


def _utf16_order(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def _sorted_utf16(texts: list[str]) -> list[str]:
    """`texts` in UTF-16 code unit order; plain sorting gives the same order for ASCII, and is faster."""
    if len(texts) < 2:
        return texts
    if "".join(texts).isascii():
        return sorted(texts)
    return sorted(texts, key=_utf16_order)


def _encode(text: str) -> str:
    """`quote(text, safe="")`, with fast paths for unreserved text (unchanged) and ASCII text."""
    if _UNRESERVED.fullmatch(text):
        return text
    return text.translate(_ASCII_ESCAPES) if text.isascii() else quote(text, safe="")


def parse_query(query: str) -> list[tuple[str, str]]:
    """Split a raw query string into decoded `(key, value)` pairs, in order.

    `+` is a space, a key without `=` has the value `""`, and every value of a
    repeated key is kept.
    """
    pairs: list[tuple[str, str]] = []
    percent_encoded = "%" in query  # without a `%`, unquote_plus only turns `+` into a space
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if percent_encoded:
            pairs.append((unquote_plus(key), unquote_plus(value)))
        else:
            pairs.append((key.replace("+", " "), value.replace("+", " ")))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The canonical query string of decoded `(key, value)` pairs."""
    values_by_key: dict[str, list[str]] = {}
    for key, value in pairs:
        if key == "jwt":
            continue
        if key in values_by_key:
            values_by_key[key].append(value)
        else:
            values_by_key[key] = [value]
    parts = []
    for key in _sorted_utf16(list(values_by_key)):
        values = values_by_key[key]
        encoded = _encode(values[0]) if len(values) == 1 else ",".join(map(_encode, _sorted_utf16(values)))
        parts.append(_encode(key) + "=" + encoded)
    return "&".join(parts)


def canonical_path(path: str, base_path: str = "") -> str:
    """The canonical URI: `path` (as sent, percent-encoded) relative to `base_path`.

    Like the reference, `base_path` is removed as a plain prefix and exactly one
    trailing slash is dropped.
    """
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    if not path:
        return "/"
    path = path.replace("&", "%26")
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def canonical_request(method: str, path: str, query: str | Iterable[tuple[str, str]], base_path: str = "") -> str:
    """Atlassian's canonical request: `METHOD&path&query`.

    `query` is either the raw query string or already-decoded pairs.
    """
    pairs = parse_query(query) if isinstance(query, str) else query
    return f"{method.upper()}&{canonical_path(path, base_path)}&{canonical_query(pairs)}"


_MEMO_MAX_TARGET = 1024
"""Targets up to this many characters (path plus query) have their hash memoised; longer ones are not kept."""


@lru_cache(maxsize=512)
def _memoised_target_hash(method: str, path: str, query: str, base_path: str) -> bytes:
    return hashlib.sha256(canonical_request(method, path, query, base_path).encode("utf-8")).hexdigest().encode()


def target_hash(method: str, path: str, query: str, base_path: str = "") -> bytes:
    """The hex `qsh` (as ASCII bytes) of a request for `path` (as sent) and its raw `query`.

    A route's requests repeat the same target (a webhook URL, a page's query), and
    canonicalising costs more than the rest of a verification's Python work, so
    short targets are memoised: the hash is a pure function of them. Long (and so
    possibly hostile) targets are hashed each time and never kept.
    """
    if len(path) + len(query) <= _MEMO_MAX_TARGET:
        return _memoised_target_hash(method, path, query, base_path)
    return hashlib.sha256(canonical_request(method, path, query, base_path).encode("utf-8")).hexdigest().encode()


def query_string_hash(method: str, url: str, base_url: str = "") -> str:
    """The `qsh` claim for a request of `method` to `url` in an app or product at `base_url`.

    `url` may be absolute or just a path with a query string.
    """
    parts = urlsplit(url)
    base_path = urlsplit(base_url).path if base_url else ""
    canonical = canonical_request(method, parts.path, parts.query, base_path)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
