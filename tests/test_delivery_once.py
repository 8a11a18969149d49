"""`delivery_once`: a delivery is remembered for the block and forgotten if the block fails, so its retry is new.

Unit tests on `InMemoryRedeliveryStore` and `MemoryStore`; every store's primitives are in
the store contract, the example app's routes in `tests/test_faults.py` (a real database fault).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest

from fastapi_connect_auth import (
    AuthError,
    AuthErrorCode,
    ConnectClaims,
    Delivery,
    ForgettingRedeliveryStore,
    InMemoryRedeliveryStore,
    RedeliveryStore,
    VerifiedRequest,
    delivery_once,
    remember_delivery,
    remember_webhook_delivery,
    webhook_once,
)
from fastapi_connect_auth.stores import BaseStore, MemoryStore, SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore

pytestmark = pytest.mark.anyio

LATER = time.time() + 3600


class StoreDown(Exception):
    """What the app's own write raises: its database is down."""


async def write_fails(store: ForgettingRedeliveryStore, key: str | None) -> None:
    """A route whose write raises: `StoreDown` carries the `Delivery` it was given."""
    async with delivery_once(store, key, b"body", expires_at=LATER) as delivery:
        raise StoreDown(delivery)


async def failed_delivery(store: ForgettingRedeliveryStore, key: str | None) -> Delivery:
    with pytest.raises(StoreDown) as failed:
        await write_fails(store, key)
    delivery = failed.value.args[0]
    assert isinstance(delivery, Delivery)
    return delivery


async def test_a_failed_block_forgets_the_delivery_and_its_retry_is_stored() -> None:
    store = InMemoryRedeliveryStore()
    assert (await failed_delivery(store, "webhook:1")).new
    async with delivery_once(store, "webhook:1", b"body", expires_at=LATER) as retry:
        assert retry.new  # the retry: stored this time
    async with delivery_once(store, "webhook:1", b"body", expires_at=LATER) as again:
        assert not again.new  # stored: remembered for good
    assert repr(again) == "Delivery(new=False)"


async def test_a_retry_that_fails_never_forgets_the_first_copys_memory() -> None:
    store = InMemoryRedeliveryStore()
    assert await remember_delivery(store, "webhook:1", b"body", expires_at=LATER)
    retry = await failed_delivery(store, "webhook:1")
    assert not retry.new
    assert not await retry.forget()
    assert not await remember_delivery(store, "webhook:1", b"body", expires_at=LATER)


async def test_another_body_is_refused_before_the_block() -> None:
    store = InMemoryRedeliveryStore()
    assert await remember_delivery(store, "webhook:1", b"body", expires_at=LATER)
    with pytest.raises(AuthError) as refused:
        async with delivery_once(store, "webhook:1", b"another", expires_at=LATER, conflict_status=422):
            pytest.fail("the block ran for a conflicting body")
    assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.DELIVERY_CONFLICT, 422)


async def test_a_delivery_is_forgotten_once_and_only_while_its_own_fingerprint_is_kept() -> None:
    store = InMemoryRedeliveryStore()
    async with delivery_once(store, "forge:1", b"body", expires_at=LATER) as delivery:
        assert await delivery.forget()  # the app answered a failure without raising
        assert not await delivery.forget()
        assert await store.remember_delivery("forge:1", "someone-else", LATER) is None
    assert not await store.forget_delivery("forge:1", "not-this-one")
    assert await store.remember_delivery("forge:1", "mine", LATER) == "someone-else"


async def test_a_delivery_without_an_id_is_new_and_keeps_nothing() -> None:
    store = InMemoryRedeliveryStore()
    delivery = await failed_delivery(store, None)
    assert delivery.new
    assert not await delivery.forget()
    assert len(store._seen) == 0


async def test_a_cancelled_block_still_forgets_the_delivery(tmp_path: Path) -> None:
    """The request cancelled mid-write: the forget (a real database round trip) runs shielded."""
    store = SQLAlchemyStore(
        f"sqlite:///{tmp_path / 'deliveries.db'}", cipher=SecretCipher([SecretCipher.generate_key()])
    )
    await store.create_tables()
    try:
        with anyio.CancelScope() as scope:
            async with delivery_once(store, "webhook:1", b"body", expires_at=LATER):
                scope.cancel()
                await anyio.sleep(1)
        assert scope.cancelled_caught
        assert await remember_delivery(store, "webhook:1", b"body", expires_at=LATER)
    finally:
        await store.close()


async def test_a_store_that_cannot_forget_is_refused_before_anything_is_remembered() -> None:
    class RememberOnly:
        """A `RedeliveryStore` written before `forget_delivery`."""

        def __init__(self) -> None:
            self.kept: dict[str, str] = {}

        async def remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
            return (
                self.kept.setdefault(key, fingerprint)
                if key in self.kept
                else self.kept.setdefault(key, fingerprint) and None
            )

    old = RememberOnly()
    assert isinstance(old, RedeliveryStore)
    assert not isinstance(old, ForgettingRedeliveryStore)
    assert await remember_delivery(old, "webhook:1", b"body", expires_at=LATER)  # still works as before
    with pytest.raises(TypeError, match="RememberOnly cannot forget a delivery"):
        async with delivery_once(old, "webhook:2", b"body", expires_at=LATER):  # type: ignore[arg-type]
            pytest.fail("the block ran")
    assert list(old.kept) == ["webhook:1"]


async def test_a_forget_that_fails_is_logged_and_the_blocks_error_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class NoForget(MemoryStore):
        """A custom store written before `_forget_delivery`: the base's default."""

        _forget_delivery = BaseStore._forget_delivery

    store = NoForget()
    with caplog.at_level(logging.ERROR):
        await failed_delivery(store, "webhook:1")
    assert "could not be forgotten (NotImplementedError): its retry will be taken as seen" in caplog.text
    assert "webhook:1" not in caplog.text
    assert not await remember_delivery(store, "webhook:1", b"body", expires_at=LATER)


async def test_a_webhook_without_an_identifier_is_always_new_and_keeps_nothing() -> None:
    """Jira sent no `X-Atlassian-Webhook-Identifier`: nothing to tell a retry by, so each copy is stored."""
    store = InMemoryRedeliveryStore()
    claims = ConnectClaims.model_validate({"iss": "tenant-a", "exp": time.time() + 60})
    call = VerifiedRequest(claims, None, {"issue": {"key": "K-1"}})
    for _ in range(2):
        async with webhook_once(store, call) as delivery:
            assert delivery.new
    assert len(store._seen) == 0
    async with webhook_once(store, call, "id-1") as delivery:  # the body the dependency validated
        assert delivery.new
    assert not await remember_webhook_delivery(store, call, "id-1", {"issue": {"key": "K-1"}})
