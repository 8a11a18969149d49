"""`forge-proxy-authorization`: the egress proxy's header, built from checked values only.

The grammar is `Forge ` then comma-separated `key=value` pairs (`id`,
`installationId`, `as`, `accountId`). A value holding `,` `=`, a space or a line
break would add a pair of the caller's choosing (`id=x,as=user`) or a header of its
own, so every value must fully match a strict pattern before it is written.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

__all__ = ["INVOCATION_ID", "is_invocation_id", "proxy_authorization"]

INVOCATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,255}")
"""What an `x-forge-invocation-id` must fully match: letters, digits, `.` `_` `:` `-`, at most 256."""
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_-]{0,127}")
_INSTALLATION_ARI = "ari:cloud:ecosystem::installation/"


def is_invocation_id(value: str) -> bool:
    """Whether `value` is a well-formed invocation id (nothing that could break the header's grammar)."""
    return INVOCATION_ID.fullmatch(value) is not None


def installation_uuid(installation_id: str) -> str:
    """The bare UUID of an installation, from it or its ARI; `ValueError` for anything else."""
    bare = installation_id.removeprefix(_INSTALLATION_ARI)
    try:
        parsed = str(uuid.UUID(bare))
    except ValueError:
        raise ValueError("installation_id must be an installation's UUID or its ARI") from None
    if parsed != bare.lower():
        raise ValueError("installation_id must be an installation's UUID or its ARI")
    return parsed


def proxy_authorization(
    *,
    invocation_id: str | None = None,
    installation_id: str | None = None,
    as_: Literal["app", "user"] | None = None,
    account_id: str | None = None,
) -> str:
    """The header's value: `Forge as=…,id=…` for an invocation, `Forge as=…,installationId=…` offline.

    Exactly one of `invocation_id` and `installation_id`; `account_id` (offline
    impersonation) only with `as_="user"`. Any malformed value is a `ValueError`.
    """
    if (invocation_id is None) == (installation_id is None):
        raise ValueError("give exactly one of invocation_id and installation_id")
    if as_ not in (None, "app", "user"):
        raise ValueError("as_ is 'app' or 'user'")
    if account_id is not None and (as_ != "user" or _ACCOUNT_ID.fullmatch(account_id) is None):
        raise ValueError("account_id must be an account id, and as_ must be 'user'")
    pairs = [] if as_ is None else [f"as={as_}"]
    if invocation_id is not None:
        if not is_invocation_id(invocation_id):
            raise ValueError("invocation_id is not a well-formed invocation id")
        pairs.append(f"id={invocation_id}")
    else:
        pairs.append(f"installationId={installation_uuid(installation_id or '')}")
    if account_id is not None:
        pairs.append(f"accountId={account_id}")
    return "Forge " + ",".join(pairs)
