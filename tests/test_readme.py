"""The README's usage example is real code: it is extracted, run, and driven through a whole lifecycle."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fastapi_connect_auth.testing import FAKE_FORGE_JWKS_URL, FakeForge, FakeProduct

README = Path(__file__).resolve().parents[1] / "README.md"
APP_BASE_URL = "https://my-app.example.com"


def readme_example() -> ModuleType:
    """The README's first python block, executed as a module, its key provider swapped for the fake product's."""
    match = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert match, "README.md has no python example"
    module = ModuleType("readme_example")
    exec(compile(match.group(1), str(README), "exec"), module.__dict__)  # noqa: S102 - our own README
    return module


@pytest.fixture
def example() -> tuple[ModuleType, FakeProduct]:
    module = readme_example()
    product = FakeProduct()
    module.connect.key_provider = product.key_provider()
    return module, product


def post_json(client: TestClient, url: str, token: str, body: dict[str, Any] | None = None) -> int:
    return client.post(url, json=body or {}, headers={"Authorization": f"JWT {token}"}).status_code


def test_the_readme_example_verifies_a_whole_lifecycle(example: tuple[ModuleType, FakeProduct]) -> None:
    module, product = example
    with TestClient(module.app) as client:
        install = product.signed_token("POST", "/installed", app_base_url=APP_BASE_URL)
        assert post_json(client, "/installed", install, product.install_payload()) == 204
        assert product.client_key in module.tenants

        webhook = product.shared_secret_token("POST", "/webhooks/issue-created", app_base_url=APP_BASE_URL)
        assert post_json(client, "/webhooks/issue-created", webhook, {"webhookEvent": "jira:issue_created"}) == 200
        assert post_json(client, "/webhooks/issue-created", webhook, {"no": "event"}) == 422
        replayed = client.post("/webhooks/issue-created?x=1", headers={"Authorization": f"JWT {webhook}"})
        assert (replayed.status_code, replayed.json()["code"]) == (401, "INVALID_QSH")

        me = client.get("/api/me", headers={"Authorization": f"JWT {product.context_token(account_id='user-1')}"})
        assert me.json() == {"tenant": product.client_key, "user": "user-1"}

        uninstall = product.signed_token("POST", "/uninstalled", app_base_url=APP_BASE_URL)
        assert post_json(client, "/uninstalled", uninstall, product.lifecycle_payload("uninstalled")) == 204
        after = client.post("/webhooks/issue-created", headers={"Authorization": f"JWT {webhook}"})
        assert (after.status_code, after.json()["code"]) == (401, "UNKNOWN_ISSUER")


def test_the_readme_example_refuses_a_context_token_on_its_lifecycle_route(
    example: tuple[ModuleType, FakeProduct],
) -> None:
    module, product = example
    with TestClient(module.app) as client:
        response = client.post(
            "/installed",
            json=product.install_payload(),
            headers={"Authorization": f"JWT {product.context_token()}"},
        )
    assert (response.status_code, response.json()["code"]) == (401, "INVALID_ALGORITHM")
    assert module.tenants == {}


def readme_forge_example() -> ModuleType:
    """The README's Forge block, executed as written as a module of its own."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    (forge_block,) = [block for block in blocks if "ForgeAuth(" in block]
    module = ModuleType("readme_forge_example")
    sys.modules[module.__name__] = module  # as a script's `__main__` is: pydantic resolves its models there
    exec(compile(forge_block, str(README), "exec"), module.__dict__)  # noqa: S102 - our own README
    return module


def test_the_readme_forge_example_runs_as_written() -> None:
    module = readme_forge_example()
    forge = FakeForge(app_id=next(iter(module.forge.app_ids)))
    module.forge.key_provider = forge.key_provider()
    module.forge.jwks_url = FAKE_FORGE_JWKS_URL
    event = {"eventType": "avi:jira:created:issue", "issue": {"key": "DEMO-1"}}
    with TestClient(module.app) as client:
        driver = forge.drive(client)
        assert driver.event("/forge/events", event).status_code == 204
        assert driver.event("/forge/events", {"issue": {}}).status_code == 422
        assert (
            driver.request_remote("/forge/events", method="POST", json_body=event).json()["code"] == "WRONG_INVOCATION"
        )
        assert driver.lifecycle("/forge/lifecycle/installed", "installed").status_code == 204
        assert driver.request_remote("/forge/me").json() == {"user": forge.account_id, "site": forge.cloud_id}
        assert client.get("/forge/me").json()["code"] == "MISSING_JWT"
    assert module.installations == {forge.installation_id: "installed"}
