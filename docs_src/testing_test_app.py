"""Tests of `testing_app.py` with the test kit: the `fake_product` fixture comes from
its pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from docs_src.testing_app import BASE_URL, create_app
from fastapi_connect_auth.testing import (
    DEFAULT_ACCOUNT_ID,
    ConnectAppDriver,
    FakeProduct,
    generate_rsa_key,
)


@pytest.fixture
def client(fake_product: FakeProduct) -> Iterator[TestClient]:
    """The app, fetching install keys from the fake product instead of Atlassian's
    CDN."""
    with TestClient(create_app(key_provider=fake_product.key_provider())) as client:
        yield client


@pytest.fixture
def jira(fake_product: FakeProduct, client: TestClient) -> ConnectAppDriver:
    """The fake Jira, driving the app: it reads the descriptor, then signs each call
    for its URL."""
    return fake_product.drive(client)


def test_install_webhook_iframe_call_uninstall(jira: ConnectAppDriver) -> None:
    assert jira.install().status_code == 204
    assert (
        jira.webhook("jira:issue_created").status_code == 204
    )  # the default body is issue DEMO-1

    created = jira.context_call(
        "GET", "/api/created-issues"
    )  # as AP.context.getToken() in the iframe
    assert created.json() == {"user": DEFAULT_ACCOUNT_ID, "issues": ["DEMO-1"]}

    assert jira.uninstall().status_code == 204
    assert jira.webhook("jira:issue_created").json()["code"] == "UNKNOWN_ISSUER"


def test_forgeries_are_refused(
    jira: ConnectAppDriver, fake_product: FakeProduct
) -> None:
    forged = fake_product.signed_token(
        "POST",
        "/installed",
        app_base_url=jira.app_base_url,
        private_key=generate_rsa_key(),
    )
    assert jira.install(token=forged).json()["code"] == "INVALID_SIGNATURE"

    assert jira.install().status_code == 204
    assert jira.update().status_code == 204  # a new shared secret, as on an upgrade
    old_secret = fake_product.previous_shared_secrets[-1]
    assert (
        jira.webhook("jira:issue_created", shared_secret=old_secret).json()["code"]
        == "INVALID_SIGNATURE"
    )


def test_token_helpers_sign_any_request(
    client: TestClient, fake_product: FakeProduct
) -> None:
    """Without the driver: the product's tokens, sent by hand."""
    install = fake_product.signed_token(
        "POST", "/installed", app_base_url=BASE_URL
    )  # RS256, with the kid
    body = fake_product.install_payload(app_key="my-connect-app")
    assert (
        client.post(
            "/installed", json=body, headers={"Authorization": f"JWT {install}"}
        ).status_code
        == 204
    )

    webhook = fake_product.shared_secret_token("POST", "/webhooks/issue-created")
    event = {"issue": {"key": "DEMO-7"}}
    assert client.post(
        "/webhooks/issue-created",
        json=event,
        headers={"Authorization": f"JWT {webhook}"},
    ).is_success

    replayed = {
        "Authorization": f"JWT {webhook}"
    }  # signed for the webhook's URL, not this one
    assert (
        client.get("/api/created-issues", headers=replayed).json()["code"]
        == "INVALID_QSH"
    )
    iframe = {
        "Authorization": "JWT "
        + fake_product.context_token(account_id="557058:someone")
    }
    assert client.get("/api/created-issues", headers=iframe).json() == {
        "user": "557058:someone",
        "issues": ["DEMO-7"],
    }
