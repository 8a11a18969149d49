"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a throwaway cluster, a Unix socket.

`tests/conftest.py` loads it as a plugin; a test asks for
`postgres` (the session's server), `postgres_url` (a fresh, empty database per test)
or `database` (each test twice: on a SQLite file, then on PostgreSQL).

`initdb` and `pg_ctl` run in a temporary directory; the server listens on a Unix
socket in that directory only (no TCP port, so parallel sessions never collide) and
trusts local connections. PostgreSQL refuses to run as root: as root, the cluster
belongs to the `postgres` system user that Debian's package creates.

When the binaries are missing the PostgreSQL tests are skipped, loudly (see
`pytest_terminal_summary`); with `REQUIRE_POSTGRES=1` (set by `.ci/run`) they fail.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

SKIP_REASON = "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package"
_skipped: list[str] = []


def server_binaries() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: on the PATH, else Debian's versioned directories, newest first."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


class _Rollback(Exception):
    """Ends `PostgresServer.holding`'s transaction by rolling it back."""


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster: `url(name)` is a `postgresql://` URL for database `name` over the socket."""

    socket_dir: Path
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}"

    def execute(self, *statements: str, database: str = "postgres") -> list[list[tuple[Any, ...]]]:
        """Run `statements` on a connection of its own (asyncpg, not the code under test); their rows."""

        async def run() -> list[list[tuple[Any, ...]]]:
            import asyncpg

            connection = await asyncpg.connect(host=str(self.socket_dir), user=self.user, database=database)
            try:
                return [[tuple(row) for row in await connection.fetch(statement)] for statement in statements]
            finally:
                await connection.close()

        return asyncio.run(run())

    @contextmanager
    def holding(self, *statements: str, database: str) -> Iterator[None]:
        """Run `statements` in a transaction on another connection and keep it open (its locks held) meanwhile."""
        started, release = threading.Event(), threading.Event()
        failure: list[BaseException] = []

        async def hold() -> None:
            import asyncpg

            connection = await asyncpg.connect(host=str(self.socket_dir), user=self.user, database=database)
            try:
                async with connection.transaction():
                    for statement in statements:
                        await connection.execute(statement)
                    started.set()
                    await asyncio.get_running_loop().run_in_executor(None, release.wait)
                    raise _Rollback
            except _Rollback:
                pass
            finally:
                await connection.close()

        def run() -> None:
            try:
                asyncio.run(hold())
            except BaseException as exc:
                failure.append(exc)
                started.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.wait(30)
        try:
            if failure:
                raise failure[0]
            yield
        finally:
            release.set()
            thread.join(30)

    def create_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name


def _as_cluster_owner() -> dict[str, Any]:
    """`subprocess` arguments that run a server binary as `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam("postgres")
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _run(command: list[str], **kwargs: Any) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}")


@contextmanager
def running_server(directory: Path, *, durable: bool = False) -> Iterator[PostgresServer]:
    """Initialise a cluster in `directory`, start it on a socket there, stop it on exit.

    Tests run without `fsync`; `durable` keeps PostgreSQL's defaults, for benchmarks.
    """
    binaries = server_binaries()
    if binaries is None:
        raise FileNotFoundError(SKIP_REASON)
    owner = _as_cluster_owner()
    if owner:
        os.chown(directory, owner["user"], owner["group"])
    data = directory / "data"
    _run(
        [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        **owner,
    )
    options = f"-c listen_addresses='' -k {directory} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off"
    log = directory / "server.log"
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"], **owner)
    try:
        yield PostgresServer(directory)
    finally:
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], **owner)


def not_installed(reason: str, *, variable: str, skipped: list[str]) -> NoReturn:
    """Fail when the environment `variable` is `1` (CI), else skip, remembering why for the summary."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {reason}", pytrace=False)
    skipped.append(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; skipped (or failed, with `REQUIRE_POSTGRES=1`) when it is not installed."""
    if server_binaries() is None:
        not_installed(SKIP_REASON, variable="REQUIRE_POSTGRES", skipped=_skipped)
    with tempfile.TemporaryDirectory(prefix="pg-") as directory, running_server(Path(directory)) as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server, as a `postgresql://` URL."""
    return postgres.url(postgres.create_database())


@dataclass(frozen=True)
class Database:
    """A database the example app runs on, read back independently of the app: `sqlite3`, or asyncpg."""

    url: str
    path: Path | None = None
    """The SQLite file; `None` on PostgreSQL."""
    server: PostgresServer | None = None
    name: str = ""

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.server is None:
            # `with connect()` commits but never closes: Python 3.13 warns of the leak.
            with closing(sqlite3.connect(str(self.path))) as connection, connection:
                return connection.execute(query).fetchall()
        return self.server.execute(query, database=self.name)[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database of each kind: a SQLite file, then a PostgreSQL database on the session's server."""
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        return Database(f"sqlite:///{path}", path=path)
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    return Database(server.url(name), server=server, name=name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly that the PostgreSQL tests did not run, so a green run without them is never mistaken for one."""
    if _skipped:
        terminalreporter.write_sep("!", "PostgreSQL tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{_skipped[0]}; set REQUIRE_POSTGRES=1 to make this a failure.")
