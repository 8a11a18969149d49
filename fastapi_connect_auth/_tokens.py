"""Decode a Connect JWT once, then check it against a key the caller resolved. No I/O.

Verification needs the unverified `iss` (to load the tenant's secret) or `kid`
(to fetch Atlassian's public key) before the signature can be checked, so a
token is parsed once into `ParsedToken` and every later step reads from it:
no second decode, no second base64 or JSON pass. RS256 signatures are checked
by PyJWT's algorithm object, HS256 ones by the standard library's `hmac`, keyed
once per shared secret.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from pydantic import ValidationError

from ._errors import AuthError, AuthErrorCode
from ._models import ConnectClaims, claims_from_token

__all__ = [
    "MAX_TOKEN_LENGTH",
    "ParsedToken",
    "RawToken",
    "check_times",
    "parse_token",
    "split_token",
    "verify_rs256",
    "verify_signature",
]

MAX_TOKEN_LENGTH = 16 * 1024
"""Longer tokens are refused before any decoding: Atlassian's are a few hundred bytes."""

Algorithm = Literal["HS256", "RS256"]

_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def _base64url_decode(segment: bytes) -> bytes:
    """Decode unpadded base64url; `ValueError` if it is not. `split_token` has already admitted only its alphabet.

    One translate and one `a2b_base64`: PyJWT's `base64url_decode` does the same
    through three layers of `base64` wrappers, several times slower on a token.
    """
    return binascii.a2b_base64(segment.translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(segment) % 4))


# ParsedToken and RawToken are built once per request and never changed; they are
# not `frozen`, whose per-field `object.__setattr__` triples the cost of building one.
@dataclass(slots=True)
class ParsedToken:
    """A token split and decoded, its signature not yet checked.

    `alg` is the header's, as `claims.alg`, kept here as a plain field because
    the checks read it often and a pydantic private attribute is slow to read.
    """

    claims: ConnectClaims
    signing_input: bytes
    signature: bytes
    alg: str


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


def _decode_failure(reason: str) -> AuthError:
    return AuthError(AuthErrorCode.FAILED_TO_DECODE, f"Failed to decode the JWT: {reason}.")


def _read_header(segment: bytes) -> tuple[str, str | None]:
    """The header's `alg` and `kid`."""
    try:
        header = json.loads(_base64url_decode(segment))
    except (ValueError, TypeError, RecursionError) as exc:
        raise _decode_failure("the header is not base64url-encoded JSON") from exc
    if not isinstance(header, dict):
        raise _decode_failure("the header is not a JSON object")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
        raise _decode_failure("the header's alg and kid must be strings")
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
        raise _decode_failure("the token is too long")
    raw = token.encode("ascii", "replace")
    if raw.translate(None, _BASE64URL_ALPHABET) != b"..":
        raise _decode_failure("a JWT is three base64url segments separated by dots")
    header_segment, payload_segment, signature_segment = raw.split(b".")
    if not header_segment or not payload_segment:
        raise _decode_failure("a JWT is three base64url segments separated by dots")
    if len(header_segment) <= _HEADER_CACHE_MAX_SEGMENT:
        alg, kid = _read_cached_header(header_segment)
    else:
        alg, kid = _read_header(header_segment)
    try:
        payload = _base64url_decode(payload_segment)
        signature = _base64url_decode(signature_segment)
    except ValueError as exc:
        raise _decode_failure("the header is not base64url-encoded JSON") from exc
    return RawToken(alg, kid, payload, raw.rpartition(b".")[0], signature)


def invalid_claims(exc: ValidationError) -> AuthError:
    """`FAILED_TO_DECODE` naming the claims that failed validation (never their values)."""
    fields = sorted({".".join(str(part) for part in error["loc"]) or "payload" for error in exc.errors()})
    return _decode_failure(f"invalid claims ({', '.join(fields)})")


def parse_token(token: str) -> ParsedToken:
    """Split and decode a Connect token; raise `FAILED_TO_DECODE` for anything malformed."""
    raw = split_token(token)
    try:
        claims = claims_from_token(raw.payload, raw.alg, raw.kid)
    except ValidationError as exc:
        raise invalid_claims(exc) from exc
    return ParsedToken(claims, raw.signing_input, raw.signature, raw.alg)


def check_algorithm(parsed: ParsedToken, allowed: frozenset[Algorithm]) -> Algorithm:
    """Refuse any algorithm the route did not choose (`none`, HS384, key confusion …)."""
    alg = parsed.alg
    if alg not in allowed:
        expected = " or ".join(sorted(allowed))
        raise AuthError(
            AuthErrorCode.INVALID_ALGORITHM, f"The JWT is signed with {alg[:16]!r}; {expected} is required here."
        )
    return alg


@lru_cache(maxsize=512)
def _keyed_hmac_sha256(shared_secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with a tenant's secret, to be copied for each token.

    Keying (OpenSSL's digest lookup and the key's two padded blocks) costs more than
    hashing a token, and between a server's own work it costs several times what it
    does in a tight loop; a tenant's tokens share one secret. The 512 most recently
    used secrets are kept, as the loader's `Credentials` hold them anyway. A rotated
    secret may linger until pushed out, but it is only looked up by the secret the
    loader returns now, so it never validates a token again.
    """
    return hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha256)


def verify_signature(parsed: ParsedToken, key: str | RSAPublicKey) -> None:
    """Check the signature with a shared secret (HS256) or Atlassian's public key (RS256).

    The algorithm was fixed by `check_algorithm`; the key's type must agree with
    it, so a public key can never be used as an HMAC secret.
    """
    if parsed.alg == "HS256" and isinstance(key, str) and key:
        mac = _keyed_hmac_sha256(key).copy()
        mac.update(parsed.signing_input)
        valid = hmac.compare_digest(mac.digest(), parsed.signature)
    elif parsed.alg == "RS256" and isinstance(key, RSAPublicKey):
        valid = _RS256.verify(parsed.signing_input, key, parsed.signature)
    else:
        valid = False
    if not valid:
        raise _invalid_signature()


def verify_rs256(signing_input: bytes, signature: bytes, key: RSAPublicKey) -> None:
    """Check an RS256 signature with an RSA public key; raise `INVALID_SIGNATURE` if it does not match."""
    if not _RS256.verify(signing_input, key, signature):
        raise _invalid_signature()


def _invalid_signature() -> AuthError:
    return AuthError(AuthErrorCode.INVALID_SIGNATURE, "The JWT signature is invalid.")


def check_times(claims: _Timed, now: float, leeway: float) -> None:
    """Enforce `exp` (required) and `nbf` (when present), allowing `leeway` seconds of clock skew."""
    if now - leeway >= claims.exp:
        raise AuthError(AuthErrorCode.TOKEN_EXPIRED, "The JWT has expired.")
    if claims.nbf is not None and now + leeway < claims.nbf:
        raise AuthError(AuthErrorCode.TOKEN_NOT_YET_VALID, "The JWT is not valid yet (nbf is in the future).")
