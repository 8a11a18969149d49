"""The Installation Details client against the kit's fake API: its answers, its caching and Atlassian's rate limits.

The fake enforces one request per 5 minutes per installation by its own clock
and answers 429 with `Retry-After`; both sides share a test clock, moved by hand.
"""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from fastapi_connect_auth import (
    ForgeStoredToken,
    InMemoryForgeTokenStore,
    InstallationDetails,
    InstallationDetailsClient,
    InstallationDetailsError,
    installation_is_live,
)
from fastapi_connect_auth.testing import FakeForge

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def client_for(forge: FakeForge, clock: Clock, **options: object) -> InstallationDetailsClient:
    return InstallationDetailsClient(
        app_id=forge.app_id,
        environment_id=forge.environment_id,
        transport=forge.api_transport,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


def details_calls(forge: FakeForge) -> list[int]:
    return [call.status for call in forge.api_calls if call.url.startswith("/forge/installation/v1/")]


async def test_the_details_of_an_installation_typed_and_kept_five_minutes() -> None:
    clock = Clock()
    forge = FakeForge(clock=clock)
    client = client_for(forge, clock)
    details = await client.details(forge.installation_id, token=forge.system_token())
    assert isinstance(details, InstallationDetails)
    assert (details.version, details.is_sandbox) == ("2.4.0", False)
    assert details.installation_context is not None
    assert details.installation_context.id == f"ari:cloud:jira::site/{forge.cloud_id}"
    assert details.permissions is not None
    assert "read:app-system-token" in details.permissions.scopes
    assert details.permissions.external["fetch"]["backend"] == ["https://connect-app.example.test"]
    assert await client.details(forge.installation_uuid, token=forge.system_token()) == details  # kept
    assert details_calls(forge) == [200]
    clock.now += 301
    assert await client.details(forge.installation_id, token=forge.system_token()) == details
    assert details_calls(forge) == [200, 200]


async def test_a_429_is_honoured_without_asking_again_until_retry_after() -> None:
    clock = Clock()
    forge = FakeForge(clock=clock)
    first, second = client_for(forge, clock), client_for(forge, clock)  # two replicas
    assert await first.details(forge.installation_id, token=forge.system_token()) is not None
    clock.now += 100
    with pytest.raises(InstallationDetailsError) as limited:
        await second.details(forge.installation_id, token=forge.system_token())
    assert (limited.value.status_code, limited.value.retry_after) == (429, 201)
    clock.now += 200
    with pytest.raises(InstallationDetailsError) as held:
        await second.details(forge.installation_id, token=forge.system_token())
    assert held.value.status_code == 429
    assert details_calls(forge) == [200, 429]  # held back: nothing sent
    clock.now += 2
    assert await second.details(forge.installation_id, token=forge.system_token()) is not None
    assert details_calls(forge) == [200, 429, 200]


async def test_the_apps_minute_is_counted_before_sending() -> None:
    clock = Clock()
    forge = FakeForge(clock=clock)
    client = client_for(forge, clock, app_limit=1)
    assert await client.details(forge.installation_id, token=forge.system_token()) is not None
    other = "ari:cloud:ecosystem::installation/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    with pytest.raises(InstallationDetailsError) as held:
        await client.details(other, token=forge.system_token())
    assert (held.value.status_code, held.value.retry_after) == (429, 60)
    assert details_calls(forge) == [200]
    clock.now += 61
    with pytest.raises(InstallationDetailsError) as refused:  # another installation than the token's
        await client.details(other, token=forge.system_token())
    assert refused.value.status_code == 401


async def test_concurrent_callers_share_one_request() -> None:
    """Five callers while the first request is under way (held at a gate): one request, one answer for all."""
    forge = FakeForge()
    gate = asyncio.Event()

    async def held(request: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        return forge.answer_api_request(request)

    client = InstallationDetailsClient(
        app_id=forge.app_id, environment_id=forge.environment_id, transport=httpx2.MockTransport(held)
    )
    callers = asyncio.gather(*(client.details(forge.installation_id, token=forge.system_token()) for _ in range(5)))
    for _ in range(20):  # let every caller reach its wait
        await asyncio.sleep(0)
    gate.set()
    answers = await callers
    assert len({answer.version for answer in answers if answer is not None}) == 1
    assert details_calls(forge) == [200]


async def test_is_this_installation_still_live() -> None:
    clock = Clock()
    forge = FakeForge(clock=clock)
    tokens = InMemoryForgeTokenStore(clock=clock)
    client = client_for(forge, clock)
    assert await installation_is_live(client, tokens, forge.installation_id) is None  # no token: cannot tell
    token = forge.system_token()
    await tokens.put(forge.installation_id, None, ForgeStoredToken(token, forge.api_base_url, clock.now + 3600))
    assert await installation_is_live(client, tokens, forge.installation_id) is True
    forge.installed = False
    clock.now += 301
    assert await installation_is_live(client, tokens, forge.installation_id) is False
    forge.revoke(token)
    clock.now += 301
    assert await installation_is_live(client, tokens, forge.installation_id) is None  # 401: cannot tell


async def test_unreachable_and_malformed_answers_are_errors() -> None:
    forge = FakeForge()

    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    def odd(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"version": 3})

    for handler, status in ((down, None), (odd, 200)):
        client = InstallationDetailsClient(
            app_id=forge.app_id, environment_id=forge.environment_id, transport=httpx2.MockTransport(handler)
        )
        with pytest.raises(InstallationDetailsError) as failed:
            await client.details(forge.installation_id, token=forge.system_token())
        assert failed.value.status_code == status
        assert forge.system_token() not in str(failed.value)


def test_ids_and_urls() -> None:
    forge = FakeForge()
    client = InstallationDetailsClient(app_id=forge.app_id, environment_id=forge.environment_id)
    assert client.url(forge.installation_id) == (
        f"https://api.atlassian.com/forge/installation/v1/{forge.app_id.rsplit('/', 1)[1]}/"
        f"{forge.environment_id.rsplit('/', 1)[1]}/installation/{forge.installation_uuid}"
    )
    for bad in ("not-a-uuid", "ari:cloud:ecosystem::installation/../../x", "0F1E2D3C4B5A49788695A4B3C2D1E0F9"):
        with pytest.raises(ValueError, match="installation_id"):
            client.url(bad)
    with pytest.raises(ValueError, match="app_id"):
        InstallationDetailsClient(app_id="x", environment_id=forge.environment_id)
    with pytest.raises(Exception, match="plain http"):
        InstallationDetailsClient(app_id=forge.app_id, environment_id=forge.environment_id, base_url="http://evil.test")
