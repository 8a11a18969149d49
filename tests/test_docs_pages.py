"""The docs read well: samples fit the page, each snippet names its file, guides link Atlassian's docs.

Sample files (docs_src/) are held to 88 columns by ruff (docs_src/ruff.toml); this
checks the code written in the pages themselves and how the pages present samples.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda page: page.name)
def test_python_samples_fit_in_88_columns(page: Path) -> None:
    long = [
        line
        for language, _, code in FENCE.findall(page.read_text())
        if language == "python"
        for line in code.splitlines()
        if len(line) > 88
    ]
    assert long == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_included_sample_shows_its_file_name(page: Path) -> None:
    for _, info, code in FENCE.findall(page.read_text()):
        included = re.findall(r'^--8<-- "([^"]+)"', code, re.MULTILINE)
        for name in included:
            assert f'title="{name}"' in info, f"{page.name}: the snippet of {name} shows no file name"


@pytest.mark.parametrize("page", ["lifecycle.md", "routes.md", "testing.md"])
def test_guides_link_atlassians_own_documentation(page: str) -> None:
    assert "https://developer.atlassian.com/cloud/" in (ROOT / "docs" / page).read_text()


def test_benchmarks_and_hardening_sit_under_project_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    project = nav.split("  - Project:\n", 1)[1]
    assert "Benchmarks: benchmarks.md" in project
    assert "Hardening: hardening.md" in project
    assert "benchmarks.md" not in nav.split("  - Project:\n", 1)[0]
