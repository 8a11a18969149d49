"""The package as users get it: a built wheel installed into a fresh virtual environment, and its metadata.

Integration test: it builds the wheel with the standard tools and installs it with uv
(its cache makes a repeated install take a second or two), away from this checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import metadata
from pathlib import Path

import fastapi_connect_auth

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run(  # noqa: S603 - fixed commands, built by these tests
        command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_built_wheel_installs_into_a_fresh_venv_with_its_pytest_plugin(tmp_path: Path) -> None:
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "dist", ROOT, cwd=ROOT)
    (wheel,) = (tmp_path / "dist").glob("fastapi_connect_auth-*.whl")
    assert wheel.name == f"fastapi_connect_auth-{fastapi_connect_auth.__version__}-py3-none-any.whl"
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, venv, cwd=tmp_path)
    run(sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", python, wheel, "pytest", cwd=tmp_path)

    with zipfile.ZipFile(wheel) as archive:
        assert "fastapi_connect_auth/testing/ap_bridge.js" in archive.namelist()  # the kit's fake all.js

    probe = textwrap.dedent(
        """
        import importlib.metadata, importlib.util, sys, fastapi_connect_auth, fastapi_connect_auth.testing.plugin
        from fastapi_connect_auth.testing import APBridge
        print(fastapi_connect_auth.__file__)
        print(fastapi_connect_auth.__version__, importlib.metadata.version("fastapi-connect-auth"))
        print(importlib.util.find_spec("playwright") is None, "window.AP = {" in APBridge.script())
        print(importlib.util.find_spec("httpx") is None, "httpx" in sys.modules, "httpx2" in sys.modules)
        """
    )
    location, versions, bridge, http_client = run(python, "-c", probe, cwd=tmp_path).splitlines()
    assert location.startswith(str(venv))  # the installed copy, not this checkout
    assert versions == f"{fastapi_connect_auth.__version__} {fastapi_connect_auth.__version__}"
    assert bridge == "True True"  # the kit, its AP bridge included, imports without Playwright
    assert http_client == "True False True"  # httpx2 only: httpx is neither installed nor imported

    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # a user's project: not this repo's pytest config
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            def test_the_plugin_is_loaded(fake_product, fake_confluence):
                assert fake_confluence.base_url.endswith("/wiki")
            """
        )
    )
    assert "1 passed" in run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py", cwd=tmp_path)


def test_the_version_has_one_source_and_a_changelog_entry() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert '[tool.hatch.version]\npath = "fastapi_connect_auth/__init__.py"' in pyproject
    assert metadata("fastapi-connect-auth")["Version"] == fastapi_connect_auth.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    version = re.escape(fastapi_connect_auth.__version__)
    assert re.search(rf"^## \[{version}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE)
    assert "## [Unreleased]" in changelog


def test_the_license_file_is_the_mit_license_the_metadata_names() -> None:
    installed = metadata("fastapi-connect-auth")
    assert installed["License-Expression"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    labels = {url.partition(",")[0] for url in installed.get_all("Project-URL") or []}
    assert {"Source", "Documentation", "Changelog", "Issues"} <= labels


def test_every_install_command_shown_installs_from_source() -> None:
    """Until the package is on PyPI, `pip install fastapi-connect-auth` would find nothing: no page shows it."""
    clone = "git clone https://github.com/fastapi-connect-auth/fastapi-connect-auth\n"
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"pip install (-U )?fastapi-connect-auth\b", text), page.name
        for command in re.findall(r"pip install \./fastapi-connect-auth", text):
            assert clone in text, f"{page.name} installs from a clone it does not show: {command}"
    assert clone + "python -m pip install './fastapi-connect-auth[sqlite,cli]'\n" in (ROOT / "README.md").read_text()
    assert clone + "python -m pip install ./fastapi-connect-auth uvicorn\n" in (ROOT / "docs/index.md").read_text()


def test_the_kits_fakes_import_without_pytest_and_its_contract_suite_says_it_needs_it() -> None:
    """Scripts and simulated products use the fakes outside pytest; only `StoreContract` is a pytest class."""
    probe = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None  # what `import pytest` meets where pytest is not installed
        from fastapi_connect_auth.testing import FakeForge, FakeProduct
        print(FakeProduct().base_url.startswith("https://"), FakeForge().forge_auth() is not None)
        try:
            from fastapi_connect_auth.testing import StoreContract
        except ImportError as exc:
            print(type(exc).__name__, exc.name)
        """
    )
    assert run(sys.executable, "-c", probe, cwd=ROOT).splitlines() == ["True True", "ModuleNotFoundError pytest"]
