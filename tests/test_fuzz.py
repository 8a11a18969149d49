"""Property-based fuzzing of the token parser and the install payload model.

Deterministic (`derandomize=True`, no example database) so CI runs the same
examples every time; the counts are in `docs/hardening.md`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fastapi_connect_auth import AuthError, AuthErrorCode, ConnectAuth, InstallPayload
from fastapi_connect_auth._connect._tokens import parse_token, verify_signature

SECRET = "a-shared-secret-long-enough-for-hs256-" * 2
CLAIMS = {"iss": "fake-jira-1234", "iat": 1_700_000_000, "exp": 1_700_000_180, "qsh": "0" * 64}
VALID_TOKEN = jwt.encode(CLAIMS, SECRET, algorithm="HS256")
VALID_PAYLOAD: dict[str, Any] = {
    "key": "my-app",
    "clientKey": "fake-jira-1234",
    "sharedSecret": SECRET,
    "baseUrl": "https://fake-jira.atlassian.net",
    "displayUrl": "https://fake-jira.atlassian.net",
    "productType": "jira",
    "description": "Atlassian JIRA",
    "eventType": "installed",
    "serverVersion": "100285",
    "pluginsVersion": "1001.0.0",
}
FIELD_NAMES = [*VALID_PAYLOAD, "oauthClientId", "cloudId", "installationId", "publicKey", "serviceEntitlementNumber"]
MAX_BODY = 4096


def fuzz(examples: int) -> Any:
    """Hypothesis settings for CI: fixed examples, no timing, no saved database."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=12,
    )


FINITE_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
JSON_SCALARS = FINITE_SCALARS | st.floats() | st.text(max_size=40)
"""Python's `json.dumps` writes NaN and infinities as `NaN`/`Infinity`, which a hostile sender may too."""
JSON_VALUES = json_values(JSON_SCALARS)
FINITE_JSON_VALUES = json_values(FINITE_SCALARS | st.text(max_size=40))
JSON_OBJECTS = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=12), JSON_VALUES, max_size=12)
SEGMENT_BYTES = st.binary(max_size=120) | JSON_VALUES.map(lambda value: json.dumps(value).encode())
HEADERS = st.fixed_dictionaries({"alg": st.sampled_from(["HS256", "RS256", "none", "HS384"]) | JSON_SCALARS}).flatmap(
    lambda header: st.dictionaries(st.sampled_from(["kid", "typ"]), JSON_SCALARS, max_size=2).map(
        lambda extra: {**header, **extra}
    )
)
CLAIM_OBJECTS = st.dictionaries(
    st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "qsh", "context"]) | st.text(max_size=6),
    JSON_VALUES,
    max_size=8,
)


def parses_or_fails_to_decode(token: str) -> Any:
    """`parse_token(token)`, or `None` if it raised FAILED_TO_DECODE; any other exception fails the test."""
    try:
        return parse_token(token)
    except AuthError as exc:
        refusal = exc
    assert refusal.code is AuthErrorCode.FAILED_TO_DECODE
    assert refusal.status_code == 401
    return None


# -- the token parser ---------------------------------------------------------------------


@fuzz(1500)
@given(st.text(max_size=300))
def test_any_text_parses_or_fails_to_decode(text: str) -> None:
    parses_or_fails_to_decode(text)


@fuzz(1000)
@given(st.lists(SEGMENT_BYTES, min_size=3, max_size=3))
def test_any_three_base64url_segments_parse_or_fail_to_decode(segments: list[bytes]) -> None:
    parses_or_fails_to_decode(".".join(b64url(segment) for segment in segments))


@fuzz(1000)
@given(HEADERS, CLAIM_OBJECTS, st.binary(max_size=64))
def test_any_header_and_claims_objects_parse_or_fail_to_decode(
    header: dict[str, Any], claims: dict[str, Any], signature: bytes
) -> None:
    token = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}.{b64url(signature)}"
    parsed = parses_or_fails_to_decode(token)
    if parsed is not None:
        assert parsed.alg == header["alg"]
        assert parsed.claims.iss == claims["iss"]


MUTATIONS = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, len(VALID_TOKEN) - 1), st.characters(codec="ascii")),
    st.tuples(st.just("insert"), st.integers(0, len(VALID_TOKEN)), st.characters(codec="ascii")),
    st.tuples(st.just("delete"), st.integers(0, len(VALID_TOKEN) - 1), st.just("")),
)


def mutate(token: str, mutations: list[tuple[str, int, str]]) -> str:
    for kind, position, character in mutations:
        position = min(position, len(token) - (kind != "insert"))
        if position < 0:
            continue
        if kind == "replace":
            token = token[:position] + character + token[position + 1 :]
        elif kind == "insert":
            token = token[:position] + character + token[position:]
        else:
            token = token[:position] + token[position + 1 :]
    return token


@fuzz(1500)
@given(st.lists(MUTATIONS, min_size=1, max_size=4))
def test_a_mutated_token_never_verifies(mutations: list[tuple[str, int, str]]) -> None:
    """A changed token fails to decode or fails its signature check, unless it still decodes to the same bytes.

    Base64url's last character carries unused bits, so a few spellings of the
    same signature exist; the signed bytes and the signature bytes are what count.
    """
    original = parse_token(VALID_TOKEN)
    mutated = mutate(VALID_TOKEN, mutations)
    parsed = parses_or_fails_to_decode(mutated)
    if parsed is None:
        return
    same_bytes = parsed.signing_input == original.signing_input and parsed.signature == original.signature
    if same_bytes:
        verify_signature(parsed, SECRET)
    else:
        with pytest.raises(AuthError) as refused:
            verify_signature(parsed, SECRET)
        assert refused.value.code is AuthErrorCode.INVALID_SIGNATURE


def test_the_unmutated_token_verifies() -> None:
    """The mutation property above is not vacuous: the original token passes."""
    verify_signature(parse_token(VALID_TOKEN), SECRET)


# -- the install payload ------------------------------------------------------------------


def install_payload_or_validation_error(data: Any) -> InstallPayload | None:
    try:
        return InstallPayload.model_validate(data)
    except ValidationError:
        return None


@fuzz(1000)
@given(JSON_OBJECTS)
def test_any_json_object_validates_or_is_a_validation_error(data: dict[str, Any]) -> None:
    install_payload_or_validation_error(data)


@fuzz(1000)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6))
def test_a_valid_payload_with_fields_overridden_validates_or_is_a_validation_error(overrides: dict[str, Any]) -> None:
    payload = install_payload_or_validation_error({**VALID_PAYLOAD, **overrides})
    if payload is not None:
        assert payload.client_key == {**VALID_PAYLOAD, **overrides}["clientKey"]


CONNECT = ConnectAuth(
    base_url="https://app.example.test", credentials_loader=lambda client_key: None, max_body_size=MAX_BODY
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6).map(
        lambda overrides: json.dumps({**VALID_PAYLOAD, **overrides}).encode()
    ),
    st.integers(MAX_BODY - 200, MAX_BODY + 200).map(
        lambda size: json.dumps({**VALID_PAYLOAD, "description": ""}).encode().ljust(size)
    ),
)


@fuzz(1000)
@given(BODIES)
def test_parse_payload_answers_only_payload_errors(body: bytes) -> None:
    try:
        CONNECT.parse_payload(body, InstallPayload)
    except AuthError as exc:
        refusal: AuthError | None = exc
    else:
        refusal = None
    if refusal is not None:
        expected = {AuthErrorCode.INVALID_INSTALL_PAYLOAD: 400, AuthErrorCode.PAYLOAD_TOO_LARGE: 413}
        assert refusal.code in expected
        assert refusal.status_code == expected[refusal.code]
        assert (refusal.code is AuthErrorCode.PAYLOAD_TOO_LARGE) == (len(body) > MAX_BODY)
        assert SECRET not in refusal.message


EXTRA_NAMES = st.text(min_size=1, max_size=12).filter(lambda name: name not in FIELD_NAMES and name.isidentifier())


@fuzz(500)
@given(st.dictionaries(EXTRA_NAMES, FINITE_JSON_VALUES, min_size=1, max_size=5))
def test_unknown_fields_round_trip(extra: dict[str, Any]) -> None:
    """Atlassian adds fields over time: the model keeps what it does not know, unchanged."""
    names = {InstallPayload.model_fields[name].alias for name in InstallPayload.model_fields}
    extra = {
        name: value for name, value in extra.items() if name not in names and name not in InstallPayload.model_fields
    }
    payload = InstallPayload.model_validate_json(json.dumps({**VALID_PAYLOAD, **extra}))
    dumped = json.loads(payload.model_dump_json(by_alias=True))
    for name, value in extra.items():
        assert dumped[name] == value
    assert payload.shared_secret.get_secret_value() == SECRET
