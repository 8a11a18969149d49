"""Parsing and checking Connect JWTs, with tokens made independently by PyJWT or by hand."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import pickle
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fastapi_connect_auth import AuthError, AuthErrorCode, ConnectClaims
from fastapi_connect_auth._connect._tokens import (
    Algorithm,
    ParsedToken,
    check_algorithm,
    hs256_signature,
    parse_token,
    verify_signature,
)
from fastapi_connect_auth._tokens import MAX_TOKEN_LENGTH, check_times, split_token
from tests._keyserver import public_pem, rsa_key

SECRET = "a-shared-secret-of-at-least-32-bytes-for-hs256"
OTHER_SECRET = "another-shared-secret-of-32-bytes-or-more"
CLAIMS: dict[str, Any] = {"iss": "client-key", "sub": "account-1", "exp": 2_000_000_000, "iat": 1_999_999_000}
HS256_ONLY: frozenset[Algorithm] = frozenset({"HS256"})
RS256_ONLY: frozenset[Algorithm] = frozenset({"RS256"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value).encode("utf-8"))


def hand_made_hs256(claims: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 token signed with any bytes, which PyJWT refuses to do for empty or PEM keys."""
    signing_input = b64url_json(header or {"alg": "HS256", "typ": "JWT"}) + "." + b64url_json(claims)
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def raw_token(header: str, payload: str, signature: str = "c2ln") -> str:
    return f"{header}.{payload}.{signature}"


def hs256(claims: dict[str, Any] = CLAIMS, secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def rs256(claims: dict[str, Any] = CLAIMS, kid: str = "key-1", key_index: int = 0) -> str:
    return jwt.encode(claims, rsa_key(2048, key_index), algorithm="RS256", headers={"kid": kid})


def expect_error(code: AuthErrorCode) -> pytest.RaisesExc[AuthError]:
    return pytest.raises(AuthError, match=f"^{code.value}: ")


# --- parse_token ---------------------------------------------------------------------------------------------------


def test_parse_hs256_token() -> None:
    parsed = parse_token(hs256())
    assert parsed.alg == "HS256"
    assert parsed.claims.iss == "client-key"
    assert parsed.claims.sub == "account-1"
    assert parsed.claims.exp == 2_000_000_000
    assert parsed.claims.kid is None
    assert parsed.claims.aud == []


def test_parse_rs256_token_keeps_kid_and_extra_claims() -> None:
    token = rs256({**CLAIMS, "aud": ["https://app.example.com"], "qsh": "q", "custom": {"x": 1}}, kid="a/b")
    parsed = parse_token(token)
    assert (parsed.alg, parsed.claims.kid) == ("RS256", "a/b")
    assert parsed.claims.aud == ["https://app.example.com"]
    assert parsed.claims.qsh == "q"
    assert parsed.claims.model_extra == {"custom": {"x": 1}}


def test_signing_input_and_signature_are_the_tokens_own() -> None:
    token = hs256()
    header, payload, signature = token.split(".")
    parsed = parse_token(token)
    assert parsed.signing_input == f"{header}.{payload}".encode("ascii")
    assert b64url(parsed.signature) == signature


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def with_unused_bits_set(segment: str) -> str:
    """`segment` with the unused low bits of its last character set: lenient decoders (PyJWT's) ignore them."""
    unused = {2: 0b1111, 3: 0b11}[len(segment) % 4]
    return segment[:-1] + ALPHABET[ALPHABET.index(segment[-1]) | unused]


@pytest.mark.parametrize("size", [1, 2, 4, 5, 31, 32, 256, 941, 1255])
def test_segments_decode_to_the_bytes_pyjwt_decodes_their_unused_bits_set_or_not(size: int) -> None:
    """A segment goes through pydantic-core's base64 first and `a2b_base64` when that refuses it (unused bits
    set): either way the payload and signature are the bytes PyJWT's decoder gives, so no token that verified before
    fails now, nor the other way round."""
    data = bytes((index * 37 + size) % 256 for index in range(size))
    header = b64url_json({"alg": "HS256", "typ": "JWT"})
    segments = [b64url(data)]
    if len(segments[0]) % 4:
        segments.append(with_unused_bits_set(segments[0]))
    for segment in segments:
        raw = split_token(f"{header}.{segment}.{segment}")
        assert raw.payload == raw.signature == jwt.utils.base64url_decode(segment) == data


def test_audience_string_becomes_a_list() -> None:
    assert parse_token(hs256({**CLAIMS, "aud": "https://app.example.com"})).claims.aud == ["https://app.example.com"]


def test_payload_cannot_override_header_alg_or_kid() -> None:
    """Claims named alg/kid in the payload never stand in for the header's."""
    parsed = parse_token(hs256({**CLAIMS, "alg": "none", "kid": "../evil"}, kid="real-kid"))
    assert parsed.alg == "HS256"
    assert parsed.claims.alg == "HS256"
    assert parsed.claims.kid == "real-kid"


def test_payload_alg_does_not_fill_a_missing_header_kid() -> None:
    parsed = parse_token(hs256({**CLAIMS, "kid": "payload-kid"}))
    assert parsed.claims.kid is None


def test_header_alg_and_kid_survive_copies_and_count_in_equality_but_not_in_dumps() -> None:
    """The header's alg/kid are kept beside the claims, not among them: copies keep them, dumps omit them."""
    claims = parse_token(rs256(kid="key-1")).claims
    for copied in (claims.model_copy(), copy.deepcopy(claims), pickle.loads(pickle.dumps(claims))):  # noqa: S301 (our own bytes)
        assert (copied.alg, copied.kid) == ("RS256", "key-1")
        assert copied == claims
    assert claims != parse_token(rs256(kid="key-2")).claims
    assert claims != ConnectClaims.model_validate(CLAIMS)
    assert claims.model_dump() == ConnectClaims.model_validate(CLAIMS).model_dump()
    dumped = claims.model_dump_json()
    assert "alg" not in dumped
    assert "kid" not in dumped


VALID_HEADER = b64url_json({"alg": "HS256", "typ": "JWT"})
VALID_PAYLOAD = b64url_json(CLAIMS)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("a" * (MAX_TOKEN_LENGTH + 1), id="too-long"),
        pytest.param(
            raw_token(VALID_HEADER, b64url_json({**CLAIMS, "pad": "x" * MAX_TOKEN_LENGTH})),
            id="too-long-but-well-formed",
        ),
        pytest.param("", id="empty"),
        pytest.param(f"{VALID_HEADER}.{VALID_PAYLOAD}", id="two-segments"),
        pytest.param(f"{VALID_HEADER}.{VALID_PAYLOAD}.c2ln.c2ln", id="four-segments"),
        pytest.param(f".{VALID_PAYLOAD}.c2ln", id="empty-header"),
        pytest.param(f"{VALID_HEADER}..c2ln", id="empty-payload"),
        pytest.param(raw_token("a", VALID_PAYLOAD), id="header-bad-base64-length"),
        pytest.param(raw_token(VALID_HEADER, "a"), id="payload-bad-base64-length"),
        pytest.param(raw_token(VALID_HEADER, VALID_PAYLOAD, "a"), id="signature-bad-base64-length"),
        pytest.param(raw_token(VALID_HEADER + "=", VALID_PAYLOAD), id="padding-character"),
        pytest.param(raw_token(VALID_HEADER.replace("e", "+", 1), VALID_PAYLOAD), id="standard-base64-alphabet"),
        pytest.param(raw_token(VALID_HEADER, VALID_PAYLOAD) + "é", id="non-ascii"),
        pytest.param(raw_token(VALID_HEADER, VALID_PAYLOAD[:8] + "\n" + VALID_PAYLOAD[8:]), id="whitespace-inside"),
        pytest.param(raw_token(b64url(b"not json"), VALID_PAYLOAD), id="header-not-json"),
        pytest.param(raw_token(b64url(b"\xff\xfe"), VALID_PAYLOAD), id="header-not-utf8"),
        pytest.param(raw_token(b64url_json(["HS256"]), VALID_PAYLOAD), id="header-a-list"),
        pytest.param(raw_token(b64url_json("HS256"), VALID_PAYLOAD), id="header-a-string"),
        pytest.param(raw_token(b64url(b"[" * 5000), VALID_PAYLOAD), id="header-deeply-nested"),
        pytest.param(raw_token(b64url_json({"typ": "JWT"}), VALID_PAYLOAD), id="alg-missing"),
        pytest.param(raw_token(b64url_json({"alg": 256}), VALID_PAYLOAD), id="alg-a-number"),
        pytest.param(raw_token(b64url_json({"alg": None}), VALID_PAYLOAD), id="alg-null"),
        pytest.param(raw_token(b64url_json({"alg": ["HS256"]}), VALID_PAYLOAD), id="alg-a-list"),
        pytest.param(raw_token(b64url_json({"alg": "RS256", "kid": 1}), VALID_PAYLOAD), id="kid-a-number"),
        pytest.param(raw_token(VALID_HEADER, b64url(b"{not json")), id="payload-not-json"),
        pytest.param(raw_token(VALID_HEADER, b64url_json([CLAIMS])), id="payload-a-list"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({"iss": "client-key"})), id="exp-missing"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({"exp": 2_000_000_000})), id="iss-missing"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "exp": "2000000000"})), id="exp-a-string"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "exp": True})), id="exp-a-boolean"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "nbf": "0"})), id="nbf-a-string"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "iss": 42})), id="iss-a-number"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "aud": [1]})), id="aud-not-strings"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "qsh": 1})), id="qsh-a-number"),
        pytest.param(raw_token(VALID_HEADER, b64url_json({**CLAIMS, "context": []})), id="context-a-list"),
    ],
)
def test_malformed_tokens_fail_to_decode(token: str) -> None:
    with expect_error(AuthErrorCode.FAILED_TO_DECODE) as caught:
        parse_token(token)
    assert caught.value.status_code == 401


def test_decode_failure_names_the_bad_claims_not_their_values() -> None:
    """The message says which claims were wrong, never what they contained."""
    token = raw_token(VALID_HEADER, b64url_json({"iss": "client-key", "exp": "a-secret-looking-value"}))
    with expect_error(AuthErrorCode.FAILED_TO_DECODE) as caught:
        parse_token(token)
    assert "exp" in caught.value.message
    assert "a-secret-looking-value" not in caught.value.message
    assert token not in str(caught.value)


def test_unsigned_token_parses_but_its_algorithm_is_refused() -> None:
    """`alg: none` tokens (empty signature) reach check_algorithm, which refuses them."""
    parsed = parse_token(jwt.encode(CLAIMS, "", algorithm="none"))
    assert parsed.signature == b""
    with expect_error(AuthErrorCode.INVALID_ALGORITHM):
        check_algorithm(parsed, HS256_ONLY)
    with expect_error(AuthErrorCode.INVALID_SIGNATURE):
        verify_signature(parsed, SECRET)


# --- check_algorithm -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "allowed"),
    [
        pytest.param(jwt.encode(CLAIMS, "", algorithm="none"), HS256_ONLY, id="none"),
        pytest.param(
            jwt.encode(CLAIMS, SECRET + "-made-long-enough-for-hs384", algorithm="HS384"), HS256_ONLY, id="HS384"
        ),
        pytest.param(jwt.encode(CLAIMS, rsa_key(), algorithm="RS512"), RS256_ONLY, id="RS512"),
        pytest.param(jwt.encode(CLAIMS, rsa_key(), algorithm="RS256"), HS256_ONLY, id="RS256-where-HS256"),
        pytest.param(jwt.encode(CLAIMS, SECRET, algorithm="HS256"), RS256_ONLY, id="HS256-where-RS256"),
        pytest.param(raw_token(b64url_json({"alg": "hs256"}), VALID_PAYLOAD), HS256_ONLY, id="lower-case"),
    ],
)
def test_check_algorithm_refuses_other_algorithms(token: str, allowed: frozenset[Algorithm]) -> None:
    with expect_error(AuthErrorCode.INVALID_ALGORITHM) as caught:
        check_algorithm(parse_token(token), allowed)
    assert caught.value.status_code == 401


def test_check_algorithm_message_truncates_a_hostile_alg() -> None:
    parsed = parse_token(raw_token(b64url_json({"alg": "X" * 1000}), VALID_PAYLOAD))
    with expect_error(AuthErrorCode.INVALID_ALGORITHM) as caught:
        check_algorithm(parsed, HS256_ONLY)
    assert len(caught.value.message) < 100


@pytest.mark.parametrize(
    ("token", "allowed", "expected"),
    [
        pytest.param(hs256(), HS256_ONLY, "HS256", id="HS256"),
        pytest.param(rs256(), RS256_ONLY, "RS256", id="RS256"),
        pytest.param(hs256(), HS256_ONLY | RS256_ONLY, "HS256", id="HS256-of-either"),
        pytest.param(rs256(), HS256_ONLY | RS256_ONLY, "RS256", id="RS256-of-either"),
    ],
)
def test_check_algorithm_accepts_the_allowed(token: str, allowed: frozenset[Algorithm], expected: str) -> None:
    assert check_algorithm(parse_token(token), allowed) == expected


# --- verify_signature ----------------------------------------------------------------------------------------------


def test_hs256_with_the_right_secret_verifies() -> None:
    verify_signature(parse_token(hs256()), SECRET)


def test_hs256_with_a_non_ascii_secret_verifies() -> None:
    secret = "geheimnis-ünd-noch-viel-länger-als-32-bytes"
    verify_signature(parse_token(hs256(secret=secret)), secret)


@pytest.mark.parametrize(
    ("token", "key"),
    [
        pytest.param(hs256(), OTHER_SECRET, id="hs256-wrong-secret"),
        pytest.param(hs256(), "", id="hs256-empty-secret"),
        pytest.param(hs256(), rsa_key().public_key(), id="hs256-with-a-public-key"),
        pytest.param(rs256(key_index=1), rsa_key().public_key(), id="rs256-wrong-key"),
        pytest.param(rs256(), SECRET, id="rs256-with-a-secret"),
        pytest.param(jwt.encode(CLAIMS, SECRET + "-made-long-enough-for-hs384", algorithm="HS384"), SECRET, id="hs384"),
    ],
)
def test_wrong_keys_do_not_verify(token: str, key: Any) -> None:
    with expect_error(AuthErrorCode.INVALID_SIGNATURE):
        verify_signature(parse_token(token), key)


def test_a_secret_keyed_once_checks_each_token_afresh_and_only_with_that_secret() -> None:
    """The keyed HMAC kept per secret is copied for each token: no state carries over, no secret stands in for another."""
    mine, theirs = parse_token(hs256()), parse_token(hs256(secret=OTHER_SECRET))
    for _ in range(3):
        verify_signature(mine, SECRET)
        verify_signature(theirs, OTHER_SECRET)
    for parsed, key in ((mine, OTHER_SECRET), (theirs, SECRET)):
        with expect_error(AuthErrorCode.INVALID_SIGNATURE):
            verify_signature(parsed, key)
    for number in range(600):  # more secrets than are kept keyed: SECRET's is pushed out and keyed again
        verify_signature(parse_token(hs256(secret=f"{SECRET}-{number}")), f"{SECRET}-{number}")
    verify_signature(mine, SECRET)


@pytest.mark.parametrize(
    "secret",
    ["s", SECRET, "x" * 63, "x" * 64, "x" * 65, "ü" * 32, "ü" * 33, "k" * 1000],
    ids=["1-byte", "47-bytes", "63-bytes", "64-bytes", "65-bytes", "64-bytes-utf8", "66-bytes-utf8", "1000-bytes"],
)
@pytest.mark.parametrize("message", [b"", b"a.b", b"x" * 55, b"x" * 64, b"x" * 10_000], ids=len)
def test_hs256_signature_is_the_standard_hmac_sha256(secret: str, message: bytes) -> None:
    """Keyed once per secret, including secrets longer than SHA-256's block, which HMAC hashes first."""
    expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    assert hs256_signature(secret, message) == expected
    assert hs256_signature(secret, message) == expected  # the kept keyed hashes are copied, never fed


def test_rs256_with_the_right_key_verifies() -> None:
    verify_signature(parse_token(rs256()), rsa_key().public_key())


def test_empty_secret_is_refused_even_when_the_token_was_signed_with_it() -> None:
    """An empty shared secret would let anyone sign; it never verifies."""
    parsed = parse_token(hand_made_hs256(CLAIMS, b""))
    with expect_error(AuthErrorCode.INVALID_SIGNATURE):
        verify_signature(parsed, "")


def test_tampered_payload_does_not_verify() -> None:
    header, _, signature = hs256().split(".")
    forged = raw_token(header, b64url_json({**CLAIMS, "iss": "someone-else"}), signature)
    with expect_error(AuthErrorCode.INVALID_SIGNATURE):
        verify_signature(parse_token(forged), SECRET)


def test_tampered_signature_does_not_verify() -> None:
    header, payload, signature = rs256().split(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    flipped[0] ^= 1
    with expect_error(AuthErrorCode.INVALID_SIGNATURE):
        verify_signature(parse_token(raw_token(header, payload, b64url(bytes(flipped)))), rsa_key().public_key())


def test_public_key_pem_as_hmac_secret_never_verifies() -> None:
    """Key confusion: an HS256 token 'signed' with Atlassian's public key PEM must not pass as RS256."""
    public_key = rsa_key().public_key()
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pem == public_pem(rsa_key())
    parsed = parse_token(hand_made_hs256(CLAIMS, pem, {"alg": "HS256", "kid": "key-1"}))
    with expect_error(AuthErrorCode.INVALID_ALGORITHM):
        check_algorithm(parsed, RS256_ONLY)
    with expect_error(AuthErrorCode.INVALID_SIGNATURE):
        verify_signature(parsed, public_key)


def test_signature_error_does_not_echo_the_token_or_secret() -> None:
    token = hs256()
    with expect_error(AuthErrorCode.INVALID_SIGNATURE) as caught:
        verify_signature(parse_token(token), OTHER_SECRET)
    for text in (str(caught.value), repr(caught.value)):
        assert token not in text
        assert OTHER_SECRET not in text
    assert caught.value.headers == {"WWW-Authenticate": "JWT"}


# --- check_times ---------------------------------------------------------------------------------------------------


def claims_with(**times: float) -> ParsedToken:
    return parse_token(hs256({"iss": "client-key", **times}))


EXP = 1_000_000.0
NBF = 900_000.0


@pytest.mark.parametrize(
    ("now", "leeway"),
    [
        pytest.param(EXP - 1, 0.0, id="before-exp"),
        pytest.param(EXP - 0.001, 0.0, id="just-before-exp"),
        pytest.param(EXP + 29.999, 30.0, id="within-leeway-after-exp"),
        pytest.param(NBF, 0.0, id="at-nbf"),
        pytest.param(NBF - 30.0, 30.0, id="nbf-exactly-leeway-ahead"),
    ],
)
def test_times_within_bounds_pass(now: float, leeway: float) -> None:
    check_times(claims_with(exp=EXP, nbf=NBF).claims, now, leeway)


@pytest.mark.parametrize(
    ("now", "leeway"),
    [
        pytest.param(EXP, 0.0, id="at-exp"),
        pytest.param(EXP + 30.0, 30.0, id="exactly-leeway-after-exp"),
        pytest.param(EXP + 1_000, 30.0, id="long-expired"),
    ],
)
def test_expired_tokens_are_refused(now: float, leeway: float) -> None:
    with expect_error(AuthErrorCode.TOKEN_EXPIRED):
        check_times(claims_with(exp=EXP, nbf=NBF).claims, now, leeway)


@pytest.mark.parametrize(
    ("now", "leeway"),
    [
        pytest.param(NBF - 0.001, 0.0, id="just-before-nbf"),
        pytest.param(NBF - 30.001, 30.0, id="just-beyond-leeway-before-nbf"),
    ],
)
def test_tokens_not_yet_valid_are_refused(now: float, leeway: float) -> None:
    with expect_error(AuthErrorCode.TOKEN_NOT_YET_VALID):
        check_times(claims_with(exp=EXP, nbf=NBF).claims, now, leeway)


def test_nbf_is_optional() -> None:
    check_times(claims_with(exp=EXP).claims, 0.0, 0.0)


def test_float_exp_is_honoured() -> None:
    claims = claims_with(exp=EXP + 0.5).claims
    check_times(claims, EXP + 0.25, 0.0)
    with expect_error(AuthErrorCode.TOKEN_EXPIRED):
        check_times(claims, EXP + 0.5, 0.0)
