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

The `fake_product` fixture comes with the library's pytest plugin.
"""

from ._driver import ConnectAppDriver
from ._keyserver import KeyServer
from ._product import DEFAULT_ACCOUNT_ID, FAKE_KEYS_URL, FakeProduct, generate_rsa_key
from ._restapi import ProductAPICall

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "FAKE_KEYS_URL",
    "ConnectAppDriver",
    "FakeProduct",
    "KeyServer",
    "ProductAPICall",
    "generate_rsa_key",
]
