"""The pytest plugin of `fastapi_connect_auth.testing`: the `fake_product` fixture.

Registered through the `pytest11` entry point, so installing the library is enough.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ._product import FakeProduct, generate_rsa_key

__all__ = ["fake_product", "fake_product_signing_key"]


@pytest.fixture(scope="session")
def fake_product_signing_key() -> rsa.RSAPrivateKey:
    """One RSA key for the whole run: generating a key takes a noticeable moment."""
    return generate_rsa_key()


@pytest.fixture
def fake_product(fake_product_signing_key: rsa.RSAPrivateKey) -> FakeProduct:
    """A fresh fake Jira tenant (its own client key and shared secret) that can install and call your app."""
    return FakeProduct(private_key=fake_product_signing_key)
