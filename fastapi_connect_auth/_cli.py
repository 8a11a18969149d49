"""The `fastapi-connect-auth` command line (Click), a thin layer over `_explain`.

```sh
fastapi-connect-auth explain TOKEN --method GET --url 'https://app.example.com/page?a=1' --secret-env SECRET
```

Exit status 0: the token would be accepted; 1: it would be rejected; 2: the
command line is wrong (with a usage message). The secret is read only from the
environment variable `--secret-env` names, never from an argument (arguments
end up in shell histories and process lists).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import click

from . import __version__
from ._cli_migrate import migrate
from ._explain import Explanation, Request, UsageProblem, explain, load_jwks
from ._logs import redact_tokens
from ._tokens import MAX_TOKEN_LENGTH

__all__ = ["cli"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_STDIN_LIMIT = 4 * MAX_TOKEN_LENGTH
"""Characters read from standard input at most: enough to see that a token is too long, never a whole file."""
_UNUSUAL = re.compile(r"[^ -~]")
"""Characters that may be control characters: everything but printable ASCII (checked one by one)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fastapi-connect-auth")
def cli() -> None:
    """Tools for apps built with fastapi-connect-auth."""


cli.add_command(migrate)


@cli.command(name="explain")
@click.argument("token", required=False, metavar="[TOKEN | -]")
@click.option("--method", required=True, help="The request's HTTP method.")
@click.option("--url", required=True, help="The URL as the app received it (absolute, or a path with its query).")
@click.option("--secret-env", metavar="NAME", help="The environment variable holding the tenant's shared secret.")
@click.option("--base-url", metavar="URL", help="The app's base URL (default: the origin of --url).")
@click.option(
    "--qsh",
    type=click.Choice(["computed", "context", "any", "skip"]),
    default="computed",
    show_default=True,
    help="The route's QSH mode.",
)
@click.option("--app-id", metavar="ID", help="Forge: the app's id (ARI or UUID).")
@click.option("--jwks", metavar="FILE_OR_URL", help="The signing keys: a JWKS file or URL.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
@click.pass_context
def explain_command(
    ctx: click.Context,
    token: str | None,
    method: str,
    url: str,
    secret_env: str | None,
    base_url: str | None,
    qsh: Any,
    app_id: str | None,
    jwks: str | None,
    as_json: bool,
) -> None:
    """Say whether TOKEN would be accepted for METHOD URL, and why not.

    TOKEN is the JWT or Forge Invocation Token; '-' reads it from standard input;
    without it, the URL's jwt query parameter is used. The verdict comes from the
    library's own verification, so it is what the server decides.
    """
    try:
        request = Request(
            token=_read_stdin() if token == "-" else token,  # noqa: S105 - "-" means standard input
            method=method,
            url=url,
            secret=_secret(secret_env),
            base_url=base_url,
            qsh=qsh,
            app_id=app_id,
            jwks=load_jwks(jwks) if jwks else None,
        )
        explanation = asyncio.run(explain(request))
    except UsageProblem as exc:
        raise click.UsageError(printable(str(exc)), ctx) from None
    except Exception as exc:  # never a traceback: it could show parts of the input
        click.echo(f"Error: could not explain this token ({type(exc).__name__}); please report it.", err=True)
        ctx.exit(2)
    if as_json:
        click.echo(
            printable(json.dumps(explanation.as_json(), indent=2, ensure_ascii=False, default=str), as_json=True)
        )
    else:
        click.echo(report(explanation, url))
    ctx.exit(0 if explanation.valid else 1)


def _read_stdin() -> str:
    return sys.stdin.buffer.read(_STDIN_LIMIT).decode("utf-8", "replace")


def _secret(name: str | None) -> str | None:
    if name is None:
        return None
    if not _ENV_NAME.fullmatch(name):
        raise UsageProblem(f"--secret-env takes the name of an environment variable, not {name[:40]!r}")
    value = os.environ.get(name)
    if not value:
        raise UsageProblem(f"--secret-env: the environment variable {name} is not set or empty")
    return value


def printable(text: str, *, as_json: bool = False) -> str:
    """`text` with every control character escaped: what a token says can never steer the terminal.

    C0 and C1 controls (ESC, CSI `\\x9b`), DEL, Unicode format and bidi controls
    (U+202E, U+2066-2069, U+200B-200F), line separators and lone surrogates are
    written as escapes (`\\x1b`, `\\u202e`), in JSON as `\\uXXXX` so it still
    decodes to the same value. Only the report's own newlines and colours, added
    after this, reach the terminal as they are.
    """

    def escape(match: re.Match[str]) -> str:
        char = match[0]
        if char.isprintable() or (as_json and char == "\n"):  # json.dumps's own line breaks; its strings have none
            return char
        if as_json:
            return json.dumps(char)[1:-1]
        return char.encode("unicode_escape").decode("ascii")

    return _UNUSUAL.sub(escape, text)


@dataclass(frozen=True)
class _Styled:
    """A fixed word of the report, coloured on a terminal; never text the token chose."""

    text: str
    fg: str
    bold: bool | None = None


_Line = str | _Styled | tuple[str | _Styled, ...]


def _render(lines: list[_Line]) -> str:
    """The report's lines, every piece escaped by `printable` but the fixed words `_Styled` colours."""

    def piece(part: str | _Styled) -> str:
        return click.style(part.text, fg=part.fg, bold=part.bold) if isinstance(part, _Styled) else printable(part)

    return "\n".join("".join(map(piece, line)) if isinstance(line, tuple) else piece(line) for line in lines)


def _field(name: str, value: Any) -> str:
    return f"  {name:<12} {json.dumps(value, ensure_ascii=False, default=str)}"


def report(explanation: Explanation, url: str) -> str:
    """The readable report: the verdict and failed check first, then the token, the QSH, facts and hints.

    Everything in it but a few fixed words is escaped (`_render`): the token's
    header and claims, the library's messages quoting them, and the URL.
    """
    lines: list[_Line] = []
    if explanation.valid:
        lines.append((_Styled("ACCEPTED", "green", bold=True), ": the server would accept this token."))
    else:
        code = explanation.code.value if explanation.code else "?"
        lines.append((_Styled(f"REJECTED {code}", "red", bold=True), f" (check: {explanation.failed_check})"))
        lines.append(f"  {explanation.message}")
    lines.append("")
    lines.append(f"token:        {explanation.kind or 'not a JWT'}")
    lines.append(f"request:      {redact_tokens(url)}")
    if explanation.header is not None:
        lines.append("header:")
        lines.extend(_field(name, value) for name, value in explanation.header.items())
    if explanation.claims is not None:
        lines.append("claims:")
        lines.extend(_field(name, value) for name, value in explanation.claims.items())
    if explanation.canonical_request is not None:
        lines.append(f"canonical request: {explanation.canonical_request}")
    if explanation.qsh is not None:
        verdict = _Styled("matches", "green") if explanation.qsh["matches"] else _Styled("does not match", "red")
        lines.append(f"  qsh of the token: {explanation.qsh['token']}")
        lines.append((f"  qsh computed:     {explanation.qsh['computed']} (", verdict, ")"))
    if explanation.facts:
        lines.append("facts:")
        lines.extend(f"  - {fact}" for fact in explanation.facts)
    if explanation.hints:
        lines.append(_Styled("hints:", "yellow", bold=True))
        lines.extend(f"  - {hint}" for hint in explanation.hints)
    if explanation.troubleshooting:
        lines.append(f"see {explanation.troubleshooting}")
    return _render(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit status."""
    # The verdict is the report: the library's own rejection log lines would only repeat it on stderr.
    logging.getLogger("fastapi_connect_auth").addHandler(logging.NullHandler())
    try:
        status = cli.main(args=argv, prog_name="fastapi-connect-auth", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return status if isinstance(status, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
