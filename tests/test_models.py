"""The models of what Atlassian sends: camelCase bodies, kept extras, secrets that stay secret, sane URLs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import ValidationError

from fastapi_connect_auth import ConnectClaims, Credentials, InstallPayload, LifecyclePayload, VerifiedRequest
from fastapi_connect_auth._connect._models import verified_request
from tests.conftest import CLIENT_KEY, PRODUCT_BASE_URL, SHARED_SECRET, install_body, lifecycle_body


def parse_install(**overrides: Any) -> InstallPayload:
    return InstallPayload.model_validate_json(json.dumps(install_body(**overrides)))


def test_install_payload_parses_camel_case() -> None:
    payload = parse_install(
        oauthClientId="oauth-client-1", serviceEntitlementNumber="SEN-1", cloudId="cloud-1", installationId="ari:x"
    )

    assert payload.key == "my-connect-app"
    assert payload.client_key == CLIENT_KEY
    assert payload.shared_secret.get_secret_value() == SHARED_SECRET
    assert payload.base_url == PRODUCT_BASE_URL
    assert payload.display_url == PRODUCT_BASE_URL
    assert payload.product_type == "jira"
    assert payload.event_type == "installed"
    assert payload.server_version == "100270"
    assert payload.plugins_version == "1001.0.0-SNAPSHOT"
    assert payload.oauth_client_id == "oauth-client-1"
    assert payload.service_entitlement_number == "SEN-1"
    assert payload.cloud_id == "cloud-1"
    assert payload.installation_id == "ari:x"


def test_install_payload_keeps_unknown_fields() -> None:
    payload = parse_install(capabilities={"future": True}, someNewField="kept")

    assert payload.model_extra == {"capabilities": {"future": True}, "someNewField": "kept"}


def test_shared_secret_never_appears_in_repr_str_or_json() -> None:
    payload = parse_install()
    credentials = Credentials(SHARED_SECRET, {"id": 1}, PRODUCT_BASE_URL)

    for text in (repr(payload), str(payload), payload.model_dump_json(), repr(credentials)):
        assert SHARED_SECRET not in text
    assert SHARED_SECRET not in json.dumps(payload.model_dump(mode="json"))


def test_an_install_dumped_for_storage_keeps_the_secret_and_reads_back() -> None:
    """Issue 9: `model_dump_json(by_alias=True)` stores "**********" as the secret; every later call then fails."""
    body = install_body(oauthClientId="oauth-1", futureField={"kept": True})
    payload = InstallPayload.model_validate(body)
    assert json.loads(payload.model_dump_json(by_alias=True))["sharedSecret"] == "**********"  # the trap

    record = payload.dump_for_storage()
    assert record == body  # the body as the product sent it, unknown fields included
    assert json.loads(json.dumps(record)) == record  # JSON types only: any JSON column takes it
    restored = InstallPayload.model_validate(record)
    assert restored == payload
    assert restored.shared_secret.get_secret_value() == SHARED_SECRET


def test_install_payload_requires_the_shared_secret_but_lifecycle_payload_does_not() -> None:
    with pytest.raises(ValidationError, match="sharedSecret"):
        parse_install(sharedSecret=None)

    assert LifecyclePayload.model_validate(lifecycle_body("uninstalled")).shared_secret is None


@pytest.mark.parametrize(
    "base_url",
    ["https://tenant.atlassian.net", "https://tenant.atlassian.net/wiki", "http://localhost:2990/jira"],
)
def test_base_url_accepts_http_and_https_urls(base_url: str) -> None:
    assert parse_install(baseUrl=base_url).base_url == base_url


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://tenant.atlassian.net",
        "javascript:alert(1)",
        "tenant.atlassian.net",
        "https://",
        "https://user@tenant.atlassian.net",
        "https://user:password@tenant.atlassian.net",
        "https://tenant.atlassian.net/?redirect=evil",
        "https://tenant.atlassian.net/#fragment",
        "https://tenant.atlassian.net/" + "x" * 3000,
        "https://tenant.atlassian.net/\x00",
        "https://tenant.atlassian.net/wiki\x1b[2J",
    ],
    ids=[
        "ftp",
        "javascript",
        "no-scheme",
        "no-host",
        "user",
        "user-password",
        "query",
        "fragment",
        "oversize",
        "nul",
        "escape",
    ],
)
def test_base_url_must_be_http_without_userinfo_query_or_fragment(base_url: str) -> None:
    with pytest.raises(ValidationError, match="baseUrl"):
        parse_install(baseUrl=base_url)


@pytest.mark.parametrize(
    ("field", "value"),
    [("clientKey", 42), ("clientKey", ""), ("key", None), ("eventType", None), ("sharedSecret", "s" * 2000)],
)
def test_install_payload_refuses_wrong_types_and_sizes(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        parse_install(**{field: value})


def test_payloads_are_frozen() -> None:
    payload = parse_install()

    with pytest.raises(ValidationError):
        payload.client_key = "other"  # type: ignore[misc]


CLAIMS: dict[str, Any] = {"iss": CLIENT_KEY, "exp": 1_700_000_180}


def test_account_id_is_the_context_user_account_id() -> None:
    claims = ConnectClaims.model_validate(
        {**CLAIMS, "sub": "557058:sub", "context": {"user": {"accountId": "557058:ctx", "userKey": "admin"}}}
    )

    assert claims.account_id == "557058:ctx"
    assert claims.context is not None
    assert claims.context.user is not None
    assert claims.context.user.user_key == "admin"


@pytest.mark.parametrize(
    "context",
    [None, {}, {"user": None}, {"user": {}}, {"user": {"accountId": ""}}, {"jira": {"issue": {"id": "10001"}}}],
    ids=["no-context", "empty", "user-null", "user-empty", "account-id-empty", "jira-only"],
)
def test_account_id_falls_back_to_sub(context: dict[str, Any] | None) -> None:
    raw = {**CLAIMS, "sub": "557058:sub"} | ({"context": context} if context is not None else {})

    assert ConnectClaims.model_validate(raw).account_id == "557058:sub"


def test_account_id_is_none_without_user_or_sub() -> None:
    assert ConnectClaims.model_validate(CLAIMS).account_id is None


def test_audience_string_becomes_a_list_and_context_extras_are_kept() -> None:
    claims = ConnectClaims.model_validate(
        {**CLAIMS, "aud": "https://test.example.com", "context": {"jira": {"issue": {"key": "PRJ-1"}}}}
    )

    assert claims.aud == ["https://test.example.com"]
    assert claims.context is not None
    assert claims.context.model_extra == {"jira": {"issue": {"key": "PRJ-1"}}}


@pytest.mark.parametrize(
    "raw",
    [{"exp": 1}, {"iss": CLIENT_KEY}, {**CLAIMS, "exp": "1700000180"}, {**CLAIMS, "iss": 7}, {**CLAIMS, "aud": 1}],
    ids=["no-iss", "no-exp", "exp-string", "iss-number", "aud-number"],
)
def test_claims_are_strictly_typed(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ConnectClaims.model_validate(raw)


def test_alg_and_kid_come_from_the_header_never_from_claims() -> None:
    claims = ConnectClaims.model_validate({**CLAIMS, "alg": "none", "kid": "../evil"})

    assert claims.alg == ""
    assert claims.kid is None


def test_a_verified_request_built_on_the_hot_path_is_the_one_its_constructor_builds() -> None:
    """`verified_request` stores the fields through the slots: every field, as `VerifiedRequest(...)` would."""
    claims = ConnectClaims(iss=CLIENT_KEY, exp=2_000_000_000)
    entity = {"tenant": "t"}
    built, constructed = verified_request(claims, entity), VerifiedRequest(claims, entity)
    assert [field.name for field in dataclasses.fields(VerifiedRequest)] == [
        "claims",
        "stored_entity",
        "body",
        "raw_body",
        "webhook_identifier",
    ]
    assert built == constructed
    assert (built.claims, built.stored_entity, built.body, built.raw_body, built.webhook_identifier) == (
        claims,
        entity,
        None,
        None,
        None,
    )
    assert type(built) is VerifiedRequest
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.body = "x"  # type: ignore[misc]
