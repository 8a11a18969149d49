"""A Connect JWT parsed once into `ConnectClaims`, and its signature checked with the key it needs. No I/O.

HS256 signatures are checked with the standard library's SHA-256, keyed once per
shared secret; RS256 ones by cryptography's RSA check, PKCS #1 v1.5 over SHA-256 (`verify_rs256`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from .._errors import AuthError, AuthErrorCode
from .._tokens import invalid_claims, invalid_signature, is_rsa_public_key, split_token, verify_rs256
from ._models import ConnectClaims, claims_from_token

if TYPE_CHECKING:
    from hashlib import _Hash

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = ["Algorithm", "ParsedToken", "check_algorithm", "hs256_signature", "parse_token", "verify_signature"]

Algorithm = Literal["HS256", "RS256"]


# Built once per request and never changed; not `frozen`, whose per-field
# `object.__setattr__` triples the cost of building one.
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


_BLOCK = 64
"""SHA-256's block size: HMAC pads (or first hashes) the key to it (RFC 2104)."""
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


@lru_cache(maxsize=512)
def _keyed_sha256(shared_secret: str) -> tuple[_Hash, _Hash]:
    """HMAC-SHA256's inner and outer hashes already fed a tenant's padded secret, to be copied for each token.

    This is RFC 2104's HMAC as `hmac.new(secret, digestmod=sha256)` computes it,
    with the keying done once per secret: keying (OpenSSL's digest lookup and the
    key's two padded blocks) costs more than hashing a token, and between a
    server's own work it costs several times what it does in a tight loop. Two
    plain `hashlib` copies then cost less than copying an `hmac.HMAC` (three
    OpenSSL contexts, and three Python wrappers around them). The 512 most
    recently used secrets are kept, as the loader's `Credentials` hold them
    anyway. A rotated secret may linger until pushed out, but it is only looked
    up by the secret the loader returns now, so it never validates a token again.
    """
    key = shared_secret.encode("utf-8")
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_INNER_PAD)), hashlib.sha256(key.translate(_OUTER_PAD))


def hs256_signature(shared_secret: str, signing_input: bytes) -> bytes:
    """`hmac.digest(shared_secret, signing_input, "sha256")`, with the secret keyed once (`_keyed_sha256`)."""
    inner, outer = _keyed_sha256(shared_secret)
    inner = inner.copy()
    inner.update(signing_input)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


def verify_signature(parsed: ParsedToken, key: str | RSAPublicKey) -> None:
    """Check the signature with a shared secret (HS256) or Atlassian's public key (RS256).

    The algorithm was fixed by `check_algorithm`; the key's type must agree with
    it, so a public key can never be used as an HMAC secret.
    """
    if parsed.alg == "HS256" and isinstance(key, str) and key:
        if hmac.compare_digest(hs256_signature(key, parsed.signing_input), parsed.signature):
            return
    elif parsed.alg == "RS256" and is_rsa_public_key(key):
        verify_rs256(parsed.signing_input, parsed.signature, key)
        return
    raise invalid_signature()
