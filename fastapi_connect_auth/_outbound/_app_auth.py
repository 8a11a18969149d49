"""Signing requests as the app (`ConnectAppAuth`) and context tokens for the app's own iframe."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import httpx2
import jwt

from .._connect._qsh import CONTEXT_QSH, query_string_hash
from ._origin import TenantAuth, required

APP_TOKEN_LIFETIME = 180.0
"""Seconds an app JWT is valid: atlassian-connect-express's default of 3 minutes."""

_BITBUCKET_HOSTS = frozenset({"bitbucket.org", "api.bitbucket.org"})


def sign_hs256(claims: Mapping[str, Any], secret: str) -> str:
    """A compact HS256 JWT of `claims`, signed with the tenant's `secret` by PyJWT."""
    return jwt.encode(dict(claims), secret, algorithm="HS256")


class ConnectAppAuth(TenantAuth):
    """Sign each request to a tenant's REST API as the app: `Authorization: JWT <token>`.

    The token is HS256 with the tenant's shared secret, `iss` the app key, a
    `qsh` over this very request (relative to the tenant's base URL, so
    `https://x.atlassian.net/wiki` and `/wiki/rest/api/space` hash
    `/rest/api/space`), `aud` the tenant's client key (`sub` on Bitbucket), and a
    lifetime of `token_lifetime` seconds. Every send, redirect hop and retry is
    signed afresh. Works with `httpx2.Client` and `httpx2.AsyncClient`; no I/O.
    """

    def __init__(
        self,
        *,
        app_key: str,
        client_key: str,
        base_url: str,
        shared_secret: str,
        token_lifetime: float = APP_TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
        follow_redirects: bool = True,
        max_redirects: int = 20,
    ) -> None:
        super().__init__(base_url, follow_redirects=follow_redirects, max_redirects=max_redirects)
        self.app_key = required(app_key, "app_key")
        """The app's key: the `iss` of its tokens."""
        self.client_key = required(client_key, "client_key")
        """The tenant's client key: the `aud` of its tokens (`sub` on Bitbucket)."""
        self._shared_secret = required(shared_secret, "shared_secret")
        self.token_lifetime = token_lifetime
        """Seconds each token is valid for."""
        self.clock = clock
        """The clock tokens are dated by (seconds since the epoch)."""
        self._tenant_claim = "sub" if self.base_url.host in _BITBUCKET_HOSTS else "aud"

    def __repr__(self) -> str:
        return f"ConnectAppAuth(app_key={self.app_key!r}, base_url={str(self.base_url)!r})"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Sign each request (and each pinned redirect hop) with a token bound to its URL."""
        yield from self._hops(request, self._authorization)

    def token_for(self, method: str, url: httpx2.URL | str) -> str:
        """The app JWT for a request of `method` to `url` (which must be on the tenant's origin)."""
        url = httpx2.URL(url)
        self.check_destination(url)
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.app_key,
            "iat": now,
            "exp": now + int(self.token_lifetime),
            "qsh": query_string_hash(method, url.raw_path.decode("ascii"), str(self.base_url)),
            self._tenant_claim: [self.client_key] if self._tenant_claim == "aud" else self.client_key,
        }
        return sign_hs256(claims, self._shared_secret)

    def _authorization(self, request: httpx2.Request) -> str:
        return "JWT " + self.token_for(request.method, request.url)


def context_token(
    *,
    client_key: str,
    shared_secret: str,
    account_id: str,
    lifetime: float = 180.0,
    context: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """A context token for the app's own iframe, accepted by `ConnectRequest(qsh="context")`.

    HS256 with the tenant's shared secret, `iss` the tenant's client key, `sub`
    and `context.user.accountId` the user, `qsh` `"context-qsh"`, valid for
    `lifetime` seconds. `context` adds other members to the `context` claim.
    """
    now = int(clock())
    user = {"accountId": required(account_id, "account_id")}
    return sign_hs256(
        {
            "iss": required(client_key, "client_key"),
            "sub": account_id,
            "iat": now,
            "exp": now + int(lifetime),
            "qsh": CONTEXT_QSH,
            "context": {**(context or {}), "user": user},
        },
        required(shared_secret, "shared_secret"),
    )
