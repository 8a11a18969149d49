"""Errors raised when a call from an Atlassian product cannot be trusted.

Exception tree:

```
fastapi.HTTPException
└── AuthError                 every rejection of an inbound call; carries an AuthErrorCode
Exception
└── ProductAPIError           an outbound call to the product's REST API (tree in `_outbound/__init__.py`)
```

`AuthError` subclasses `fastapi.HTTPException` so that a rejected request is
answered correctly (401 with `WWW-Authenticate`) even where the app did not
install our handler: there is no hidden middleware requirement.
"""

from __future__ import annotations

import enum

from fastapi import HTTPException

__all__ = ["AuthError", "AuthErrorCode"]


class AuthErrorCode(str, enum.Enum):
    """Why a call was rejected.

    The first twelve are the codes of the Node library `atlassian-connect-auth`,
    with the same names and meanings; the rest are ours.
    """

    MISSING_JWT = "MISSING_JWT"
    """No token: neither `Authorization: JWT <token>` nor a `jwt` query parameter."""
    UNAUTHORIZED_REQUEST = "UNAUTHORIZED_REQUEST"
    """Legacy installs: an `installed` callback for a stored tenant came without a token."""
    FAILED_TO_DECODE = "FAILED_TO_DECODE"
    """The token is not a well-formed JWT, its claims have the wrong types, or it is too large."""
    UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
    """The credentials loader knows no tenant for the token's `iss`."""
    WRONG_ISSUER = "WRONG_ISSUER"
    """A lifecycle token's `iss` is not the payload's `clientKey`."""
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    """A signed token's `aud` is missing or is not one of the app's base URLs."""
    MISSING_QSH = "MISSING_QSH"
    """The token has no `qsh` claim."""
    INVALID_QSH = "INVALID_QSH"
    """The `qsh` does not match this request, or the token's kind is wrong for the route."""
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    """The signature does not match the tenant's shared secret or Atlassian's key."""
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    """`exp` has passed, beyond the leeway."""
    FAILED_TO_OBTAIN_PUBLIC_KEY = "FAILED_TO_OBTAIN_PUBLIC_KEY"
    """Atlassian's key for the token's `kid` could not be fetched (503 on an outage)."""
    MISSING_KID = "MISSING_KID"
    """A signed token has no `kid` header."""
    # Ours.
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    """`nbf` is in the future, beyond the leeway."""
    INVALID_KID = "INVALID_KID"
    """The `kid` is not a safe key id (path traversal, `%`, `?`, too long)."""
    INVALID_ALGORITHM = "INVALID_ALGORITHM"
    """The token's `alg` is not the one the route requires (RS256 or HS256)."""
    INVALID_INSTALL_PAYLOAD = "INVALID_INSTALL_PAYLOAD"
    """The lifecycle body is malformed or is for another event (400)."""
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    """The lifecycle body exceeds `ConnectAuth.max_body_size` (413)."""
    UNTRUSTED_PRODUCT_HOST = "UNTRUSTED_PRODUCT_HOST"
    """The payload's `baseUrl` is not on the `ProductHosts` allow-list."""
    BODY_TIMEOUT = "BODY_TIMEOUT"
    """The body did not arrive whole within the read deadline (`body_timeout`; 408, the connection is closed)."""
    CLIENT_DISCONNECTED = "CLIENT_DISCONNECTED"
    """The client disconnected before sending the whole body (400, answered to no one; logged at INFO)."""
    # Forge Remote.
    UNTRUSTED_API_HOST = "UNTRUSTED_API_HOST"
    """Forge: the FIT's `app.apiBaseUrl` is not on `ForgeAuth.api_hosts`."""
    INVALID_IC_LABEL = "INVALID_IC_LABEL"
    """Forge: the FIT's `icLabel` is malformed, or Isolated Cloud is not configured."""
    INSTALLATION_MISMATCH = "INSTALLATION_MISMATCH"
    """Forge: `app.installation.id`, or a lifecycle payload's installation, is not the FIT's `app.installationId`."""
    WRONG_INVOCATION = "WRONG_INVOCATION"
    """Forge: the FIT is not of the kind the route takes (a UI call on an event route, another module)."""
    WRONG_ENVIRONMENT = "WRONG_ENVIRONMENT"
    """Forge: the FIT's `app.environment.type` is not one of `ForgeAuth.environments`."""
    INVALID_TOKEN_LIFETIME = "INVALID_TOKEN_LIFETIME"
    """Forge: the FIT's `exp - iat` is negative or longer than `ForgeAuth.max_token_lifetime`."""
    # Stores.
    DELIVERY_CONFLICT = "DELIVERY_CONFLICT"
    """A delivery id (a FIT's `jti`, a webhook's identifier) seen before came with another body (409; 422 for a webhook)."""
    DELIVERY_STORE_FULL = "DELIVERY_STORE_FULL"
    """An in-memory delivery store is full of unexpired ids: a new one is refused rather than one forgotten (503)."""
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    """The store (database, Redis) could not be reached or written: nothing was changed; retry later (503)."""
    # Forge Containers.
    MISSING_INVOCATION_ID = "MISSING_INVOCATION_ID"
    """Containers: the call has no `x-forge-invocation-id` header."""
    INVALID_INVOCATION_ID = "INVALID_INVOCATION_ID"
    """Containers: the `x-forge-invocation-id` is not a well-formed id (refused before the sidecar is asked)."""
    UNKNOWN_INVOCATION = "UNKNOWN_INVOCATION"
    """Containers: the sidecar answered 4xx for the invocation id: it knows no such invocation."""
    SIDECAR_UNAVAILABLE = "SIDECAR_UNAVAILABLE"
    """Containers: the sidecar could not be reached, was too slow, or answered something unreadable (503)."""
    CONTEXT_MISMATCH = "CONTEXT_MISMATCH"
    """Containers: the invocation's context is of another app (`FORGE_APP_ARI`) or environment (`FORGE_ENV_ARI`)."""
    USER_REQUIRED = "USER_REQUIRED"
    """Containers: the route acts as the invocation's user, and the invocation has none (403)."""

    def __str__(self) -> str:
        return self.value


_STATUS_BY_CODE: dict[AuthErrorCode, int] = {
    AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY: 503,
    AuthErrorCode.INVALID_INSTALL_PAYLOAD: 400,
    AuthErrorCode.PAYLOAD_TOO_LARGE: 413,
    AuthErrorCode.BODY_TIMEOUT: 408,
    AuthErrorCode.CLIENT_DISCONNECTED: 400,
    AuthErrorCode.DELIVERY_CONFLICT: 409,
    AuthErrorCode.DELIVERY_STORE_FULL: 503,
    AuthErrorCode.STORE_UNAVAILABLE: 503,
    AuthErrorCode.SIDECAR_UNAVAILABLE: 503,
    AuthErrorCode.USER_REQUIRED: 403,
}
# A connection whose request body was not read to its end cannot carry another request.
_CLOSE_CONNECTION = frozenset({AuthErrorCode.BODY_TIMEOUT, AuthErrorCode.CLIENT_DISCONNECTED})


class AuthError(HTTPException):
    """A call that is not trusted, with the reason as an `AuthErrorCode`.

    The message never contains a token or a secret: it is safe to return to
    the caller and to log.
    """

    def __init__(self, code: AuthErrorCode, message: str, *, status_code: int | None = None) -> None:
        status_code = status_code or _STATUS_BY_CODE.get(code, 401)
        headers = {"WWW-Authenticate": "JWT"} if status_code == 401 else None
        if code in _CLOSE_CONNECTION:
            headers = {"Connection": "close"}
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        """Why the call was rejected."""
        self.message = message
        """A human-readable reason, safe to return and to log: never a token or a secret."""

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return f"AuthError(code={self.code.value!r}, message={self.message!r})"
