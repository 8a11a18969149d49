"""Split a JWT once, then check it against a key the caller resolved. No I/O.

Verification needs the unverified `iss` (to load the tenant's secret) or `kid`
(to fetch a public key) before the signature can be checked, so a token is
split once into `RawToken` and every later step reads from it: no second
decode, no second base64 or JSON pass. What is common to Connect's JWTs and
Forge's FITs lives here: the shape, the header, the `kid`, the times, RS256;
each side validates its own claims (`_connect/_tokens.py`, `_forge/_flow.py`).
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Protocol, TypeGuard

from pydantic import AllowInfNan, ConfigDict, StrictFloat, StrictInt, TypeAdapter, ValidationError

from ._errors import AuthError, AuthErrorCode

if TYPE_CHECKING:  # cryptography is imported at the first RS256 check (`_rs256`)
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.hashes import SHA256

__all__ = [
    "MAX_KID_LENGTH",
    "MAX_TOKEN_LENGTH",
    "NumericDate",
    "RawToken",
    "check_kid",
    "check_times",
    "decode_failure",
    "invalid_claims",
    "invalid_signature",
    "is_rsa_public_key",
    "split_token",
    "verify_rs256",
]

MAX_TOKEN_LENGTH = 16 * 1024
"""Longer tokens are refused before any decoding: Atlassian's are a few hundred bytes."""
MAX_KID_LENGTH = 256
"""Longer key ids are refused: Atlassian's are far shorter."""

NumericDate = StrictInt | Annotated[StrictFloat, AllowInfNan(False)]
"""A JWT time (`exp`, `nbf`, `iat`): NaN and infinities are refused, as `exp: NaN` would never expire."""

_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_KID = re.compile(r"[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")


_decode_base64_string = TypeAdapter(bytes, config=ConfigDict(val_json_bytes="base64")).validator.validate_json
"""pydantic-core's base64 (Rust), given a JSON string: a FIT's 1.2 KB payload in a fraction of `a2b_base64`'s time."""


def _base64url_decode(segment: bytes) -> bytes:
    """Decode unpadded base64url; `ValueError` if it is not. `split_token` has already admitted only its alphabet.

    pydantic-core's decoder first; what it refuses (an encoding whose unused last
    bits are not zero, which `a2b_base64` ignores) goes to one translate and one
    `a2b_base64` (PyJWT's `base64url_decode` does the same through three layers of
    `base64` wrappers), so every segment decodes to the same bytes as before, or fails as before.
    """
    try:
        decoded: bytes = _decode_base64_string(b'"' + segment + b'"')
    except ValidationError:
        return binascii.a2b_base64(segment.translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(segment) % 4))
    return decoded


# RawToken is built once per request and never changed; it is not `frozen`, whose
# per-field `object.__setattr__` triples the cost of building one.
@dataclass(slots=True)
class RawToken:
    """A token split into its header's `alg` and `kid`, its payload bytes, signing input and signature."""

    alg: str
    kid: str | None
    payload: bytes
    signing_input: bytes
    signature: bytes


class _Timed(Protocol):
    @property
    def exp(self) -> float: ...
    @property
    def nbf(self) -> float | None: ...


def decode_failure(reason: str) -> AuthError:
    """`FAILED_TO_DECODE` with `reason` (never the token's content)."""
    return AuthError(AuthErrorCode.FAILED_TO_DECODE, f"Failed to decode the JWT: {reason}.")


def _read_header(segment: bytes) -> tuple[str, str | None]:
    """The header's `alg` and `kid`."""
    try:
        header = json.loads(_base64url_decode(segment))
    except (ValueError, TypeError, RecursionError) as exc:
        raise decode_failure("the header is not base64url-encoded JSON") from exc
    if not isinstance(header, dict):
        raise decode_failure("the header is not a JSON object")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
        raise decode_failure("the header's alg and kid must be strings")
    return alg, kid


_HEADER_CACHE_MAX_SEGMENT = 512
_read_cached_header = lru_cache(maxsize=256)(_read_header)
"""A tenant's tokens share one of a handful of headers: each is decoded once. Failures are not cached."""


def split_token(token: str) -> RawToken:
    """Split `token` and decode its header, payload and signature; raise `FAILED_TO_DECODE` for anything malformed.

    The size and shape are checked before any base64 or JSON work, so hostile
    input costs next to nothing: deleting the base64url alphabet must leave
    exactly the two dots (anything not ASCII became `?` and stays), and the
    header and payload must not be empty (an unsigned token's signature is).
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise decode_failure("the token is too long")
    raw = token.encode("ascii", "replace")
    if raw.translate(None, _BASE64URL_ALPHABET) != b"..":
        raise decode_failure("a JWT is three base64url segments separated by dots")
    header_segment, payload_segment, signature_segment = raw.split(b".")
    if not header_segment or not payload_segment:
        raise decode_failure("a JWT is three base64url segments separated by dots")
    if len(header_segment) <= _HEADER_CACHE_MAX_SEGMENT:
        alg, kid = _read_cached_header(header_segment)
    else:
        alg, kid = _read_header(header_segment)
    try:
        payload = _base64url_decode(payload_segment)
        signature = _base64url_decode(signature_segment)
    except ValueError as exc:
        raise decode_failure("the header is not base64url-encoded JSON") from exc
    return RawToken(alg, kid, payload, raw.rpartition(b".")[0], signature)


def invalid_claims(exc: ValidationError) -> AuthError:
    """`FAILED_TO_DECODE` naming the claims that failed validation (never their values)."""
    fields = sorted({".".join(str(part) for part in error["loc"]) or "payload" for error in exc.errors()})
    return decode_failure(f"invalid claims ({', '.join(fields)})")


def check_kid(kid: str | None) -> str:
    """Return `kid` if it is safe to put in a URL path, else raise `MISSING_KID` / `INVALID_KID`.

    Atlassian changed the kid format in November 2024 and kids may contain `/`, so
    this refuses what could escape the key directory (traversal, schemes, `%`, `?`,
    `#`, whitespace, empty segments, oversize) rather than guessing a format.
    """
    if not kid:
        raise AuthError(AuthErrorCode.MISSING_KID, "The JWT header has no kid, which a signed token requires.")
    if (
        len(kid) > MAX_KID_LENGTH
        or _KID.fullmatch(kid) is None
        or ("." in kid and any(segment in (".", "..") for segment in kid.split("/")))
    ):
        raise AuthError(AuthErrorCode.INVALID_KID, "The JWT header's kid is not a valid key id.")
    return kid


def verify_rs256(signing_input: bytes, signature: bytes, key: RSAPublicKey) -> None:
    """Check an RS256 signature with an RSA public key; raise `INVALID_SIGNATURE` if it does not match."""
    padding, digest, invalid = _rs256()
    try:
        key.verify(signature, signing_input, padding, digest)
    except invalid:
        raise invalid_signature() from None


def invalid_signature() -> AuthError:
    """The `INVALID_SIGNATURE` rejection."""
    return AuthError(AuthErrorCode.INVALID_SIGNATURE, "The JWT signature is invalid.")


def check_times(claims: _Timed, now: float, leeway: float) -> None:
    """Enforce `exp` (required) and `nbf` (when present), allowing `leeway` seconds of clock skew."""
    if now - leeway >= claims.exp:
        raise AuthError(AuthErrorCode.TOKEN_EXPIRED, "The JWT has expired.")
    if claims.nbf is not None and now + leeway < claims.nbf:
        raise AuthError(AuthErrorCode.TOKEN_NOT_YET_VALID, "The JWT is not valid yet (nbf is in the future).")


@lru_cache(maxsize=1)
def _rs256() -> tuple[PKCS1v15, SHA256, type[Exception]]:
    """RS256's padding and digest (what PyJWT's `RSAAlgorithm` passes, made once, not per token) and
    cryptography's `InvalidSignature`, imported at the first use: a Connect app that only sees HS256 never
    loads cryptography."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.hashes import SHA256

    return PKCS1v15(), SHA256(), InvalidSignature


def is_rsa_public_key(key: object) -> TypeGuard[RSAPublicKey]:
    """Whether `key` is cryptography's RSA public key (cryptography imported at the first RS256 token, not before)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    return isinstance(key, RSAPublicKey)
