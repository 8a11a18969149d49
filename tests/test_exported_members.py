"""The package's public surface: `__all__` is sorted and names exactly what the package exports."""

from __future__ import annotations

import re
from importlib import import_module
from types import ModuleType

import pytest

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
    """What `dir()` lists (loaded or not yet) is `__all__`, and each name has a module to load it from."""
    public = {
        name
        for name in dir(fastapi_connect_auth)
        if not name.startswith("_") and not isinstance(getattr(fastapi_connect_auth, name), ModuleType)
    }

    assert set(fastapi_connect_auth.__all__) == public
    assert set(fastapi_connect_auth._dynamic_imports) == public


def test_every_name_is_the_object_of_its_module() -> None:
    """A lazily loaded name is the very object its private module defines (no copy, no wrapper)."""
    for name, module in fastapi_connect_auth._dynamic_imports.items():
        defined = getattr(import_module(module, "fastapi_connect_auth"), name)

        assert getattr(fastapi_connect_auth, name) is defined
        assert vars(fastapi_connect_auth)[name] is defined  # kept: the next look-up skips `__getattr__`


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'ConnectRequests'"):
        fastapi_connect_auth.ConnectRequests  # noqa: B018 - the look-up is the test
    assert not hasattr(fastapi_connect_auth, "_connect_auth")


def test_star_import_gives_every_exported_name() -> None:
    namespace: dict[str, object] = {}
    exec("from fastapi_connect_auth import *", namespace)  # noqa: S102 - a fixed statement, no input

    assert set(namespace) - {"__builtins__"} == set(fastapi_connect_auth.__all__)
