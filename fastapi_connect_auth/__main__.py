"""`python -m fastapi_connect_auth explain …`, and the `fastapi-connect-auth` console script.

The command line needs Click, from the `cli` extra; without it this says how to
install it and exits with status 2, instead of failing with an import traceback.
"""

from __future__ import annotations

import sys

INSTALL_HINT = (
    "fastapi-connect-auth: the command line needs the 'cli' extra (Click): pip install 'fastapi-connect-auth[cli]'"
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit status (2, with the install hint, when Click is missing)."""
    try:
        from ._cli import main as run
    except ModuleNotFoundError as exc:
        if exc.name != "click":
            raise
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
