"""The package's public surface: `__all__` is sorted and names exactly what the package exports."""

from __future__ import annotations

import re
from types import ModuleType

import fastapi_connect_auth


def _ruff_sort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps `__all__` in: SCREAMING_CASE, then CamelCase, then the rest."""
    if re.fullmatch(r"[A-Z0-9_]+", name) and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    names = list(fastapi_connect_auth.__all__)

    assert names == sorted(names, key=_ruff_sort_key)
    assert len(names) == len(set(names))


def test_all_equals_the_public_names() -> None:
    public = {
        name
        for name, value in vars(fastapi_connect_auth).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }

    assert set(fastapi_connect_auth.__all__) == public


def test_star_import_gives_every_exported_name() -> None:
    namespace: dict[str, object] = {}
    exec("from fastapi_connect_auth import *", namespace)  # noqa: S102 - a fixed statement, no input

    assert set(namespace) - {"__builtins__"} == set(fastapi_connect_auth.__all__)
