"""The pytest plugin of `fastapi_connect_auth.testing`: `fake_product`, `fake_confluence`, `fake_bitbucket`, `fake_forge`, `fake_sidecar`.

Registered through the `pytest11` entry point, so installing the library is enough.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ._forge import FakeForge
from ._product import FakeProduct
from ._sidecar import FakeSidecar
from ._tenant import generate_rsa_key

__all__ = [
    "fake_bitbucket",
    "fake_confluence",
    "fake_forge",
    "fake_forge_signing_key",
    "fake_product",
    "fake_product_signing_key",
    "fake_sidecar",
]


@pytest.fixture(scope="session")
def fake_product_signing_key() -> rsa.RSAPrivateKey:
    """One RSA key for the whole run: generating a key takes a noticeable moment."""
    return generate_rsa_key()


@pytest.fixture
def fake_product(fake_product_signing_key: rsa.RSAPrivateKey) -> FakeProduct:
    """A fresh fake Jira tenant (its own client key and shared secret) that can install and call your app."""
    return FakeProduct(private_key=fake_product_signing_key)


@pytest.fixture
def fake_confluence(fake_product_signing_key: rsa.RSAPrivateKey) -> FakeProduct:
    """A fresh fake Confluence tenant, at `https://fake-confluence.atlassian.net/wiki`."""
    return FakeProduct(product_type="confluence", private_key=fake_product_signing_key)


@pytest.fixture
def fake_bitbucket(fake_product_signing_key: rsa.RSAPrivateKey) -> FakeProduct:
    """A fresh fake Bitbucket Cloud tenant: its installs are signed with the shared secret, not a key."""
    return FakeProduct(product_type="bitbucket", private_key=fake_product_signing_key)


@pytest.fixture(scope="session")
def fake_forge_signing_key() -> rsa.RSAPrivateKey:
    """One RSA key for Forge's FITs for the whole run."""
    return generate_rsa_key()


@pytest.fixture
def fake_forge(fake_forge_signing_key: rsa.RSAPrivateKey) -> FakeForge:
    """A fresh fake Forge platform: one app installed in a fake Jira site, with its JWKS and product API.

    Give the app `fake_forge.forge_auth()`, and send Forge's calls with
    `fake_forge.drive(client)`.
    """
    return FakeForge(private_key=fake_forge_signing_key)


@pytest.fixture
def fake_sidecar(fake_forge: FakeForge) -> FakeSidecar:
    """A fresh fake Forge Containers sidecar in front of `fake_forge`'s site.

    Give the app `fake_sidecar.containers()` (in-process) or `fake_sidecar.environ()`
    inside `fake_sidecar.serve()` (loopback), and send invocations with `fake_sidecar.drive(client)`.
    """
    return FakeSidecar(fake_forge)
