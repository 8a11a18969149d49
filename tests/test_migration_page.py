"""The migration page (docs/migration.md) stays in step with the code it maps the Node library onto.

Its error-code table must list exactly the `AuthErrorCode` members, and every name,
attribute and keyword argument its mapping table shows on our side must exist.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import fastapi_connect_auth
from fastapi_connect_auth import AuthErrorCode

PAGE = (Path(__file__).resolve().parents[1] / "docs/migration.md").read_text()
NODE_CODES = {  # the Node library's twelve, with the same names and meanings
    "MISSING_JWT",
    "UNAUTHORIZED_REQUEST",
    "FAILED_TO_DECODE",
    "UNKNOWN_ISSUER",
    "WRONG_ISSUER",
    "WRONG_AUDIENCE",
    "MISSING_QSH",
    "INVALID_QSH",
    "INVALID_SIGNATURE",
    "TOKEN_EXPIRED",
    "FAILED_TO_OBTAIN_PUBLIC_KEY",
    "MISSING_KID",
}


def section(title: str) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", PAGE, re.MULTILINE | re.DOTALL)
    assert match, f"docs/migration.md has no section {title!r}"
    return match[1]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the first table in `text`, header and rule left out."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def has_attribute(owner: object, name: str) -> bool:
    """A class attribute, a model or dataclass field, or an attribute its `__init__` sets."""
    if hasattr(owner, name) or name in getattr(owner, "model_fields", {}):
        return True
    init = getattr(owner, "__init__", None)
    return isinstance(owner, type) and re.search(rf"self\.{name}\b", inspect.getsource(init)) is not None


def test_the_error_code_table_lists_every_code_once_and_marks_the_new_ones() -> None:
    rows = table_rows(section("Error codes"))
    codes = [row[0].strip("`") for row in rows]
    assert sorted(codes) == sorted(code.value for code in AuthErrorCode)
    assert len(codes) == len(set(codes))
    for code, same, _ in rows:
        assert (same == "yes") == (code.strip("`") in NODE_CODES), code


def test_no_table_cell_renders_an_escaped_pipe() -> None:
    """`\\|` inside a code span renders literally: the page says "or" instead."""
    assert "\\|" not in PAGE


def test_every_name_and_keyword_the_mapping_shows_exists() -> None:
    ours = " ".join(row[1] for row in table_rows(section("Functions and arguments")))
    spans = re.findall(r"`([^`]+)`", ours)
    checked = 0
    for span in spans:
        for dotted, call in re.findall(r"\b([A-Z][A-Za-z]+(?:\.[A-Za-z_]+)*)(?:\(([^)]*)\))?", span):
            head, *attributes = dotted.split(".")
            if head not in fastapi_connect_auth.__all__:
                continue
            target = getattr(fastapi_connect_auth, head)
            for attribute in attributes:
                assert has_attribute(target, attribute), f"the page names {dotted}, which does not exist"
                target = getattr(target, attribute, None)
            keywords = re.findall(r"(\w+)=", call)
            parameters = inspect.signature(target).parameters if keywords else {}
            assert set(keywords) <= set(parameters), f"{dotted} takes no {set(keywords) - set(parameters)}"
            checked += 1
    assert checked >= 15  # the table's names were found, not skipped


def test_every_auth_data_provider_hook_has_an_answer() -> None:
    hooks = {row[0].strip("`").removesuffix("()") for row in table_rows(section("`AuthDataProvider` hooks"))}
    assert hooks == {"extractConnectJwt", "extractClientKey", "computeQueryStringHash"}
