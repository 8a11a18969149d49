"""The API reference (docs/reference.md) has an entry for every public name, and for nothing else.

Public names are read from the packages' `__all__`, so a name added later needs its
entry and its docstrings too: every field, enum member, method and property that
the reference renders (inherited ones from this package included) must have one.
Docstrings are read with griffe, the library mkdocstrings renders them with. The
page itself is built once per run (with the project's mkdocs.yml, the other pages
left out) and read back: no private name may appear in what it renders.
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import griffe
import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config

import fastapi_connect_auth
import fastapi_connect_auth.stores
import fastapi_connect_auth.stores.redis
import fastapi_connect_auth.stores.sqlalchemy
import fastapi_connect_auth.testing

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: list[ModuleType] = [
    fastapi_connect_auth,
    fastapi_connect_auth.testing,
    fastapi_connect_auth.stores,
    fastapi_connect_auth.stores.sqlalchemy,
    fastapi_connect_auth.stores.redis,
]
ENTRY = re.compile(r"^::: (fastapi_connect_auth(?:\.testing|\.stores(?:\.sqlalchemy|\.redis)?)?)\.(\w+)$", re.MULTILINE)
NOT_API = {"model_config"}  # pydantic's configuration of a model, not something users call
PRIVATE_NAME = re.compile(r"(?<![\w.])_[A-Za-z]\w*")


def public_names() -> set[str]:
    return {f"{package.__name__}.{name}" for package in PACKAGES for name in package.__all__}


def reference_entries() -> list[str]:
    return [f"{module}.{name}" for module, name in ENTRY.findall((ROOT / "docs/reference.md").read_text())]


@pytest.fixture(scope="module")
def api() -> dict[str, griffe.Object]:
    """Every public object, as griffe loads it from the source."""
    loaded = griffe.load("fastapi_connect_auth", search_paths=[str(ROOT)], resolve_aliases=True)
    objects: dict[str, griffe.Object] = {}
    for path in public_names():
        member: griffe.Object | griffe.Alias = loaded[path.removeprefix("fastapi_connect_auth.")]
        objects[path] = member.final_target if isinstance(member, griffe.Alias) else member
    return objects


def documented_members(cls: griffe.Class) -> dict[str, griffe.Object]:
    """The public members the reference shows for `cls`: its own, then those it inherits from this package."""
    members: dict[str, griffe.Object] = {}
    for owner in [cls, *(base for base in cls.resolved_bases if base.path.startswith("fastapi_connect_auth."))]:
        for name, member in owner.members.items():
            if name.startswith("_") or name in NOT_API or name in members:
                continue
            members[name] = member.final_target if isinstance(member, griffe.Alias) else member
    return members


def test_every_public_name_has_one_reference_entry_and_no_private_name_has_one() -> None:
    entries = reference_entries()
    missing = sorted(public_names() - set(entries))
    assert not missing, f"docs/reference.md needs an entry `::: <name>` for each of {missing}"
    assert sorted(set(entries) - public_names()) == [], "docs/reference.md documents names that are not exported"
    assert len(entries) == len(set(entries)), "a name has two entries in docs/reference.md"


def test_every_public_name_and_member_has_a_docstring(api: dict[str, griffe.Object]) -> None:
    undocumented = []
    for path, obj in sorted(api.items()):
        if not obj.docstring:
            undocumented.append(path)
        if isinstance(obj, griffe.Class):
            members = documented_members(obj)
            undocumented += [f"{path}.{name}" for name, member in members.items() if not member.docstring]
    assert undocumented == [], "each of these needs a docstring (a field's or member's goes on the line below it)"


def test_enum_members_and_model_fields_are_documented_one_by_one(api: dict[str, griffe.Object]) -> None:
    """The members users read most, checked by name: a regression here is what sent users to the source."""
    code = documented_members(api["fastapi_connect_auth.AuthErrorCode"])  # type: ignore[arg-type]
    assert {name for name in code if name.isupper()} == {member.name for member in fastapi_connect_auth.AuthErrorCode}
    fields = documented_members(api["fastapi_connect_auth.LifecyclePayload"])  # type: ignore[arg-type]
    assert set(fastapi_connect_auth.LifecyclePayload.model_fields) <= set(fields)
    verified = documented_members(api["fastapi_connect_auth.VerifiedRequest"])  # type: ignore[arg-type]
    assert verified["client_key"].docstring
    of = documented_members(api["fastapi_connect_auth.ProductHosts"])  # type: ignore[arg-type]
    assert of["of"].docstring


def test_no_rendered_signature_names_a_private_object(api: dict[str, griffe.Object]) -> None:
    """Defaults and annotations appear in the reference: `lifetime=_LIFETIME` would show a private name."""
    functions: list[tuple[str, griffe.Function]] = []
    for path, obj in api.items():
        if isinstance(obj, griffe.Function):
            functions.append((path, obj))
        if isinstance(obj, griffe.Class):
            members = {"__init__": obj.members["__init__"]} if "__init__" in obj.members else {}
            members |= documented_members(obj)
            functions += [(f"{path}.{name}", m) for name, m in members.items() if isinstance(m, griffe.Function)]
    shown = [
        f"{path}({parameter.name}={parameter.default})"
        for path, function in functions
        for parameter in function.parameters
        if parameter.default is not None and PRIVATE_NAME.search(str(parameter.default))
    ]
    assert shown == []


def test_private_base_classes_are_not_rendered() -> None:
    """`ConnectRequest` derives from a private class: the reference shows no bases rather than that name."""
    assert "show_bases: false" in (ROOT / "mkdocs.yml").read_text()


class _CodeText(HTMLParser):
    """The text of every `<code>` element: signatures, defaults, bases, headings and inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.blocks: list[str] = [""]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "code":
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "code" and self.depth:
            self.depth -= 1
            if not self.depth:
                self.blocks.append("")

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.blocks[-1] += data


@pytest.fixture(scope="module")
def reference_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """docs/reference.md built as `make docs` builds it, alone (a few seconds: the other pages are left out)."""
    tmp = tmp_path_factory.mktemp("reference")
    (tmp / "docs").mkdir()
    shutil.copy(ROOT / "docs/reference.md", tmp / "docs/reference.md")
    config = load_config(
        config_file=str(ROOT / "mkdocs.yml"),
        docs_dir=str(tmp / "docs"),
        site_dir=str(tmp / "site"),
        nav=[{"API reference": "reference.md"}],
        strict=False,  # its links to the pages left out cannot resolve here; `make docs` checks them
    )
    build(config)
    return (tmp / "site/reference/index.html").read_text()


def test_the_built_reference_renders_no_private_name(reference_html: str) -> None:
    """No `_Name` in any signature, default, annotation, base or code span of the built page.

    Private type aliases (`_ShortText`), constants used as defaults (`_SCHEME_NAME`) and
    the values `__init__` computes (`description or _DESCRIPTION`) all used to show.
    """
    parser = _CodeText()
    parser.feed(reference_html)
    shown = sorted(
        {
            f"{name} in {' '.join(block.split())[:120]!r}"
            for block in parser.blocks
            for name in PRIVATE_NAME.findall(block)
        }
    )
    assert len(parser.blocks) > 400, "the reference did not render its signatures"
    assert shown == []
