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
    UNAUTHORIZED_REQUEST = "UNAUTHORIZED_REQUEST"
    FAILED_TO_DECODE = "FAILED_TO_DECODE"
    UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
    WRONG_ISSUER = "WRONG_ISSUER"
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    MISSING_QSH = "MISSING_QSH"
    INVALID_QSH = "INVALID_QSH"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    FAILED_TO_OBTAIN_PUBLIC_KEY = "FAILED_TO_OBTAIN_PUBLIC_KEY"
    MISSING_KID = "MISSING_KID"
    # Ours.
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    INVALID_KID = "INVALID_KID"
    INVALID_ALGORITHM = "INVALID_ALGORITHM"
    INVALID_INSTALL_PAYLOAD = "INVALID_INSTALL_PAYLOAD"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNTRUSTED_PRODUCT_HOST = "UNTRUSTED_PRODUCT_HOST"
    # Forge Remote.
    UNTRUSTED_API_HOST = "UNTRUSTED_API_HOST"
    INVALID_IC_LABEL = "INVALID_IC_LABEL"
    INSTALLATION_MISMATCH = "INSTALLATION_MISMATCH"

    def __str__(self) -> str:
        return self.value


_STATUS_BY_CODE: dict[AuthErrorCode, int] = {
    AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY: 503,
    AuthErrorCode.INVALID_INSTALL_PAYLOAD: 400,
    AuthErrorCode.PAYLOAD_TOO_LARGE: 413,
}


class AuthError(HTTPException):
    """A call that is not trusted, with the reason as an `AuthErrorCode`.

    The message never contains a token or a secret: it is safe to return to
    the caller and to log.
    """

    def __init__(self, code: AuthErrorCode, message: str, *, status_code: int | None = None) -> None:
        status_code = status_code or _STATUS_BY_CODE.get(code, 401)
        headers = {"WWW-Authenticate": "JWT"} if status_code == 401 else None
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return f"AuthError(code={self.code.value!r}, message={self.message!r})"
