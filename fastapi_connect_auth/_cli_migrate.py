"""`fastapi-connect-auth migrate`: Connect's end of support, over the library's SQL store (a thin layer).

```sh
fastapi-connect-auth migrate status --database-url postgresql://… [--json]
fastapi-connect-auth migrate link --database-url postgresql://… --connect-key my-app [--keys-env SECRET_ENCRYPTION_KEY]
                                  [--redis-url redis://… --redis-prefix my-app]
```

`status` is `readiness_report` and reads no secret: it opens the store with no
key at all. `link` is `ConnectLinker.link_stored`: it decrypts each installation's
stored system token with the keys in the environment variable `--keys-env` names
(comma-separated Fernet keys, the first encrypting, as the store was opened with),
from the database or, with `--redis-url`, from the `RedisStore` that keeps them.
A database that cannot be opened or read exits 2 with one line; nothing printed
holds a secret, a token or the database's password.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from .stores import ConnectLinker, LinkRun, ReadinessReport, SecretCipher, readiness_report

__all__ = ["migrate"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_T = TypeVar("_T")


def _no_key() -> SecretCipher:
    raise RuntimeError("this command reads no secret")


def _fail(ctx: click.Context, what: str, exc: BaseException) -> NoReturn:
    hint = "is it reachable, and migrated (alembic upgrade heads)?"
    click.echo(f"Error: cannot {what} ({type(exc).__name__}): {hint}", err=True)
    ctx.exit(2)


def _on_store(
    ctx: click.Context, database_url: str, cipher: Any, work: Callable[[Any], Awaitable[_T]], what: str
) -> _T:
    """Run `work(store)` on a `SQLAlchemyStore` of `database_url`; any failure to open or read it exits 2."""

    async def run() -> _T:
        from .stores.sqlalchemy import SQLAlchemyStore

        store = SQLAlchemyStore(database_url, cipher=cipher, cache_ttl=0)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except Exception as exc:  # one line, never a traceback: a driver's message may quote the URL
        _fail(ctx, what, exc)


@click.group(name="migrate")
def migrate() -> None:
    """Connect's end of support (31 January 2027): link every Forge installation to its Connect tenant."""


@migrate.command(name="status")
@click.option(
    "--database-url", required=True, metavar="URL", help="The library store's database (sqlite:///…, postgresql://…)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
@click.pass_context
def status_command(ctx: click.Context, database_url: str, as_json: bool) -> None:
    """How many Connect tenants are linked to a Forge installation, verified or guessed, and which are not."""
    report = _on_store(ctx, database_url, _no_key, readiness_report, "read the store's database")
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else status_report(report))


def status_report(report: ReadinessReport) -> str:
    """The readable report: the counts, then the unlinked tenants and the installations without a verified link."""
    lines = [
        f"Connect tenants (installed):   {report.connect_tenants}",
        f"  linked, verified:            {report.verified}",
        f"  linked by cloud id (guess):  {report.guessed}",
        f"  unlinked:                    {report.unlinked}",
        f"Forge installations:           {report.forge_installations}",
        f"  without a Connect tenant:    {report.forge_without_connect}",
    ]
    if report.unlinked_tenants:
        lines.append("unlinked tenants:")
        lines.extend(f"  - {t.client_key} {t.base_url} ({t.product})" for t in report.unlinked_tenants)
    if report.unreached:
        lines.append("installations without a verified link (last read):")
        lines.extend(f"  - {i.installation_id} ({i.last_outcome or 'never read'})" for i in report.unreached)
    ready = report.unlinked == 0 and report.guessed == 0
    lines.append("ready: every tenant is linked for certain." if ready else "not ready: see the lists above.")
    return "\n".join(lines)


@migrate.command(name="link")
@click.option("--database-url", required=True, metavar="URL", help="The library store's database.")
@click.option("--connect-key", required=True, help="The app's Connect key (app.connect.key).")
@click.option(
    "--keys-env",
    default="SECRET_ENCRYPTION_KEY",
    show_default=True,
    metavar="NAME",
    help="The environment variable holding the store's Fernet keys, comma-separated.",
)
@click.option("--redis-url", metavar="URL", help="Where the app keeps Forge tokens, if in Redis (REDIS_URL).")
@click.option("--redis-prefix", default="connect-auth", show_default=True, help="The Redis store's key prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
@click.pass_context
def link_command(
    ctx: click.Context,
    database_url: str,
    connect_key: str,
    keys_env: str,
    redis_url: str | None,
    redis_prefix: str,
    as_json: bool,
) -> None:
    """Read the reserved property for every stored installation without a verified link, with its stored token."""
    try:
        cipher = _cipher(keys_env)
        ConnectLinker.check_key(connect_key)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None

    async def work(store: Any) -> LinkRun:
        linker = ConnectLinker(store, connect_key=connect_key)
        if redis_url is None:
            return await linker.link_stored()
        from .stores.redis import RedisStore

        tokens = RedisStore(redis_url, cipher=cipher, prefix=redis_prefix)
        try:
            return await linker.link_stored(tokens=tokens)
        finally:
            await tokens.close()

    run = _on_store(ctx, database_url, cipher, work, "link the store's installations")
    if as_json:
        click.echo(json.dumps(run.as_json(), indent=2))
        return
    click.echo(f"installations: {len(run.attempts)}, linked: {len(run.linked)}, not reached: {len(run.unreached)}")
    for attempt in run.unreached:
        click.echo(f"  - {attempt.installation_id}: {attempt.outcome}")


def _cipher(name: str) -> SecretCipher:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"--keys-env takes the name of an environment variable, not {name[:40]!r}")
    keys = [key.strip() for key in os.environ.get(name, "").split(",") if key.strip()]
    if not keys:
        raise ValueError(f"--keys-env: the environment variable {name} is not set or empty")
    return SecretCipher(keys)
