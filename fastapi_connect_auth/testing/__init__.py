"""Test kit: a fake Atlassian product that installs your Connect app and calls it, signed like the real one.

```python
from fastapi.testclient import TestClient
from fastapi_connect_auth.testing import FakeProduct

def test_webhook_is_verified(fake_product: FakeProduct) -> None:
    with TestClient(create_app(key_provider=fake_product.key_provider())) as client:
        jira = fake_product.drive(client)
        assert jira.install().is_success
        assert jira.webhook("jira:issue_created").is_success
```

The `fake_product` (Jira), `fake_confluence`, `fake_bitbucket`, `fake_forge` and
`fake_sidecar` (Forge Containers) fixtures come with the library's pytest plugin.
Only `StoreContract` (a pytest test class) and its payload builders need pytest:
they are imported when first asked for, so the fakes also serve scripts and
servers that have no pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._bridge import ALL_JS_URL, APBridge
from ._driver import ConnectAppDriver, expand_url
from ._forge import (
    FAKE_FORGE_JWKS_URL,
    FAKE_FORGE_UI_ORIGIN,
    ConnectProperty,
    FakeForge,
    FitShape,
    ForgeAppDriver,
    JwksServer,
    RetryContextPlace,
    RetryReason,
)
from ._keyserver import KeyServer
from ._product import FakeProduct
from ._profiles import DEFAULT_ACCOUNT_ID, ProductType
from ._restapi import APIRequest, FakeRestAPI, ProductAPICall, RouteHandler
from ._sidecar import FAKE_SIDECAR_URL, ContainerAppDriver, FakeSidecar, SidecarCall, SidecarKind
from ._tenant import FAKE_KEYS_URL, FakeTenant, generate_rsa_key

if TYPE_CHECKING:
    from ._stores import StoreContract, forge_invocation, install_payload

_NEED_PYTEST = frozenset({"StoreContract", "forge_invocation", "install_payload"})

__all__ = [
    "ALL_JS_URL",
    "DEFAULT_ACCOUNT_ID",
    "FAKE_FORGE_JWKS_URL",
    "FAKE_FORGE_UI_ORIGIN",
    "FAKE_KEYS_URL",
    "FAKE_SIDECAR_URL",
    "APBridge",
    "APIRequest",
    "ConnectAppDriver",
    "ConnectProperty",
    "ContainerAppDriver",
    "FakeForge",
    "FakeProduct",
    "FakeRestAPI",
    "FakeSidecar",
    "FakeTenant",
    "FitShape",
    "ForgeAppDriver",
    "JwksServer",
    "KeyServer",
    "ProductAPICall",
    "ProductType",
    "RetryContextPlace",
    "RetryReason",
    "RouteHandler",
    "SidecarCall",
    "SidecarKind",
    "StoreContract",
    "expand_url",
    "forge_invocation",
    "generate_rsa_key",
    "install_payload",
]


def __getattr__(name: str) -> Any:
    """The store contract suite and its builders, imported on first use (they import pytest)."""
    if name in _NEED_PYTEST:
        from . import _stores

        return getattr(_stores, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
