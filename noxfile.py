"""The versions the package claims, tested: `make matrix` (= `nox`) runs every session here.

* `tests-3.10` … `tests-3.13`: the whole suite on each Python `requires-python` allows,
  with the newest dependency versions.
* `lowest`: the suite on the lowest Python with every runtime dependency at the lowest
  version `pyproject.toml` declares (`uv pip install --resolution lowest-direct`); the
  test tools come after, constrained so they cannot lift a runtime dependency.

Environments are made with uv. A Python missing from the machine is skipped, except
on CI (`CI=true`), where it is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).resolve().parent

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

# pyenv's interpreters, found by version even when its shims do not expose them all.
_PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
os.environ["PATH"] = os.pathsep.join([*map(str, sorted(_PYENV.glob("3.*/bin"))), os.environ["PATH"]])


def _floors() -> dict[str, str]:
    """`{distribution: lowest version}` of the runtime dependencies, as `pyproject.toml` declares them."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert block, "pyproject.toml declares no dependencies"
    requirements = re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([^",;]+)"', block[1])
    return {name.lower(): version for name, version in requirements}


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite, newest dependencies."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The whole suite with each runtime dependency at its declared floor."""
    session.run_install("uv", "pip", "install", "--resolution", "lowest-direct", "-e", ".")
    frozen = session.run_install("uv", "pip", "freeze", silent=True)
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", str(frozen), re.MULTILINE)
    constraints = Path(session.create_tmp()) / "runtime.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins))
    session.install("-e", ".[dev]", "--constraint", str(constraints))
    installed = {name.lower(): version for name, version in pins}
    for name, floor in _floors().items():
        session.log(f"{name}: declared >={floor}, installed {installed.get(name)}")
        if installed.get(name) not in (floor, f"{floor}.0", f"{floor}.0.0"):
            session.error(f"{name} {installed.get(name)} is not the declared floor {floor}")
    # Warnings stay errors here too, but for one: an old dependency meets the newest of its own dependencies,
    # which deprecate what it uses, and that says nothing about our floors. The only one the floors raise is
    # Starlette 1.2's `starlette.testclient` naming `anyio.abc.BlockingPortal` at import, an alias the newest
    # anyio deprecates (for `anyio.from_thread.BlockingPortal`). It is ignored by its message and category
    # only, through the environment so that the pytest runs tests start in a subprocess get the filter too.
    warning_filters = ["ignore:The anyio.abc.BlockingPortal alias is deprecated:DeprecationWarning"]
    quiet = {"PYTEST_ADDOPTS": " ".join(f"-W '{rule}'" for rule in warning_filters)}
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=quiet)
