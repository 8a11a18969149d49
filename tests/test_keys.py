"""Install-key fetching: kid checks, CDN choice and fallback, caching, single flight, and refusals.

HTTP is real: either httpx2's MockTransport (to stand in for Atlassian's CDN hosts,
routing by host) or a loopback server on 127.0.0.1 (`tests/_keyserver.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from fastapi_connect_auth import AtlassianKeyProvider, AuthError, AuthErrorCode, ConnectEnvironment, PublicKeyProvider
from fastapi_connect_auth._tokens import check_kid
from tests._keyserver import KeyServer, Reply, ec_public_pem, free_loopback_port, public_pem, rsa_key, serve_keys

KID = "prod/connect/2024-11/key_1.pem"
PEM = public_pem(rsa_key())

CDN_URLS = {
    ConnectEnvironment.PRODUCTION: (
        "https://asap-distribution.us-west-2.prod.atl-asap.net",
        "https://connect-install-keys.atlassian.com",
    ),
    ConnectEnvironment.STAGING: (
        "https://asap-distribution.us-west-2.staging.atl-asap.net",
        "https://cs-migrations--cdn.us-east-1.staging.public.atl-paas.net",
    ),
    ConnectEnvironment.FEDRAMP: (
        "https://asap-distribution.us-west-2.prod.atl-auth-us-gov-mod.net",
        "https://cs-migrations--fedrampcdn.us-east-1.prod.cdn.atlassian-us-gov-mod.com",
    ),
    ConnectEnvironment.FEDRAMP_STAGING: (
        "https://asap-distribution.us-west-2.staging.atl-auth-us-gov-mod.net",
        "https://cs-migrations--fedrampcdn.us-east-1.staging.cdn.atlassian-us-gov-mod.com",
    ),
}
"""Primary and fallback CDNs per environment, copied from atlassian-connect-express 11.5.3."""

Handler = Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    with serve_keys() as server:
        yield server


def is_our_key(key: RSAPublicKey, index: int = 0) -> bool:
    return key.public_numbers() == rsa_key(2048, index).public_key().public_numbers()


def key_error(caught: pytest.ExceptionInfo[AuthError], status: int) -> None:
    assert caught.value.code is AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY
    assert caught.value.status_code == status


class FakeCdn:
    """Atlassian's CDN hosts behind a MockTransport: each host answers one way; requests are recorded."""

    def __init__(self, by_host: dict[str, Handler]) -> None:
        self.by_host = by_host
        self.requested: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requested.append(str(request.url))
        answer = self.by_host.get(request.url.host, not_found)(request)
        return answer if isinstance(answer, httpx2.Response) else await answer

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


def host_of(url: str) -> str:
    return httpx2.URL(url).host


def serve_pem(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=PEM)


def not_found(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(404, text="no such key")


def server_error(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(500)


def too_many_requests(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(429)


def refuse_connection(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


async def hang(request: httpx2.Request) -> httpx2.Response:
    await asyncio.sleep(30)
    raise AssertionError("the provider should have timed out")


# --- check_kid -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["abc", "a/b/c", KID, "a+b", "key-1.pem", "A_b.C-d+e", "a" * 256])
def test_check_kid_accepts_safe_kids(kid: str) -> None:
    assert check_kid(kid) == kid


@pytest.mark.parametrize("kid", [None, ""])
def test_check_kid_requires_a_kid(kid: str | None) -> None:
    with pytest.raises(AuthError) as caught:
        check_kid(kid)
    assert caught.value.code is AuthErrorCode.MISSING_KID


@pytest.mark.parametrize(
    "kid",
    [
        "..",
        ".",
        "../x",
        "a/../b",
        "a/..",
        "./a",
        "a/./b",
        "/a",
        "a//b",
        "a/",
        "https://evil",
        "//evil.com/x",
        "a%2F..",
        "%2e%2e",
        "a?b",
        "a#b",
        "a b",
        "\n",
        "a\n",
        "a\\b",
        "a@b",
        "a:b",
        "é",
        "a" * 257,
        "a" * 300,
    ],
)
def test_check_kid_refuses_what_could_escape_the_key_directory(kid: str) -> None:
    with pytest.raises(AuthError) as caught:
        check_kid(kid)
    assert caught.value.code is AuthErrorCode.INVALID_KID
    assert caught.value.status_code == 401


# --- URLs ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", list(ConnectEnvironment))
def test_each_environment_uses_its_primary_then_fallback_cdn(environment: ConnectEnvironment) -> None:
    primary, fallback = CDN_URLS[environment]
    assert AtlassianKeyProvider().urls_for("k/1", environment) == [f"{primary}/k/1", f"{fallback}/k/1"]


def test_base_url_replaces_every_cdn() -> None:
    provider = AtlassianKeyProvider(base_url="http://127.0.0.1:9/keys/")
    for environment in ConnectEnvironment:
        assert provider.urls_for("k", environment) == ["http://127.0.0.1:9/keys/k"]


def test_provider_satisfies_the_protocol() -> None:
    assert isinstance(AtlassianKeyProvider(), PublicKeyProvider)


# --- Against fake CDN hosts ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_key_is_fetched_from_the_primary_cdn() -> None:
    primary, fallback = CDN_URLS[ConnectEnvironment.PRODUCTION]
    cdn = FakeCdn({host_of(primary): serve_pem, host_of(fallback): serve_pem})
    async with cdn.client() as client:
        key = await AtlassianKeyProvider(client=client).get_public_key(KID, ConnectEnvironment.PRODUCTION)
    assert is_our_key(key)
    assert cdn.requested == [f"{primary}/{KID}"]


@pytest.mark.anyio
@pytest.mark.parametrize("environment", list(ConnectEnvironment))
@pytest.mark.parametrize("primary_failure", [server_error, too_many_requests, hang, refuse_connection])
async def test_fallback_cdn_is_used_when_the_primary_fails(
    environment: ConnectEnvironment, primary_failure: Handler
) -> None:
    primary, fallback = CDN_URLS[environment]
    cdn = FakeCdn({host_of(primary): primary_failure, host_of(fallback): serve_pem})
    async with cdn.client() as client:
        provider = AtlassianKeyProvider(client=client, timeout=0.2)
        key = await provider.get_public_key(KID, environment)
    assert is_our_key(key)
    assert cdn.requested == provider.urls_for(KID, environment) == [f"{primary}/{KID}", f"{fallback}/{KID}"]


@pytest.mark.anyio
async def test_unknown_key_on_every_cdn_is_a_401() -> None:
    """A kid no CDN knows is the caller's fault: 401, not an outage."""
    cdn = FakeCdn({})
    async with cdn.client() as client:
        provider = AtlassianKeyProvider(client=client)
        with pytest.raises(AuthError) as caught:
            await provider.get_public_key(KID, ConnectEnvironment.STAGING)
    key_error(caught, 401)
    assert caught.value.headers == {"WWW-Authenticate": "JWT"}
    assert cdn.requested == provider.urls_for(KID, ConnectEnvironment.STAGING)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("primary_failure", "fallback_failure"),
    [
        (server_error, server_error),
        (not_found, server_error),
        (server_error, not_found),
        (refuse_connection, not_found),
        (too_many_requests, too_many_requests),
        (hang, refuse_connection),
    ],
)
async def test_outage_of_any_cdn_is_a_503(primary_failure: Handler, fallback_failure: Handler) -> None:
    """When a CDN could not answer, the key may exist: 503, so Atlassian retries."""
    primary, fallback = CDN_URLS[ConnectEnvironment.PRODUCTION]
    cdn = FakeCdn({host_of(primary): primary_failure, host_of(fallback): fallback_failure})
    async with cdn.client() as client:
        with pytest.raises(AuthError) as caught:
            await AtlassianKeyProvider(client=client, timeout=0.2).get_public_key(KID)
    key_error(caught, 503)
    assert len(cdn.requested) == 2


@pytest.mark.anyio
async def test_invalid_kid_is_refused_before_any_request() -> None:
    cdn = FakeCdn({})
    async with cdn.client() as client:
        with pytest.raises(AuthError) as caught:
            await AtlassianKeyProvider(client=client).get_public_key("../secrets", ConnectEnvironment.PRODUCTION)
    assert caught.value.code is AuthErrorCode.INVALID_KID
    assert cdn.requested == []


@pytest.mark.anyio
async def test_passed_in_client_is_used_and_left_open() -> None:
    cdn = FakeCdn({host_of(CDN_URLS[ConnectEnvironment.PRODUCTION][0]): serve_pem})
    async with cdn.client() as client:
        async with AtlassianKeyProvider(client=client) as provider:
            assert is_our_key(await provider.get_public_key(KID))
        assert not client.is_closed
        await provider.aclose()
        assert not client.is_closed
    assert len(cdn.requested) == 1


# --- Against a loopback key server ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_key_is_fetched_from_base_url_slash_kid(key_server: KeyServer) -> None:
    key_server.serve_key(KID, PEM)
    key = await AtlassianKeyProvider(base_url=key_server.url + "/").get_public_key(KID)
    assert is_our_key(key)
    assert key_server.requests == [f"/{KID}"]


@pytest.mark.anyio
async def test_pem_with_surrounding_whitespace_is_accepted(key_server: KeyServer) -> None:
    key_server.serve_key("k", b"\r\n  " + PEM + b"\n\n")
    assert is_our_key(await AtlassianKeyProvider(base_url=key_server.url).get_public_key("k"))


@pytest.mark.anyio
async def test_key_is_cached(key_server: KeyServer) -> None:
    key_server.serve_key("k", PEM)
    provider = AtlassianKeyProvider(base_url=key_server.url)
    first = await provider.get_public_key("k")
    second = await provider.get_public_key("k")
    assert first is second
    assert key_server.count("k") == 1


@pytest.mark.anyio
async def test_cache_is_per_environment(key_server: KeyServer) -> None:
    """A key fetched for one environment is never served for another's install."""
    key_server.serve_key("k", PEM)
    provider = AtlassianKeyProvider(base_url=key_server.url)
    await provider.get_public_key("k", ConnectEnvironment.PRODUCTION)
    await provider.get_public_key("k", ConnectEnvironment.STAGING)
    assert key_server.count("k") == 2


@pytest.mark.anyio
async def test_cached_key_expires_after_cache_ttl(key_server: KeyServer) -> None:
    key_server.serve_key("k", PEM)
    provider = AtlassianKeyProvider(base_url=key_server.url, cache_ttl=0.2)
    await provider.get_public_key("k")
    await asyncio.sleep(0.4)
    key_server.serve_key("k", public_pem(rsa_key(2048, 1)))
    assert is_our_key(await provider.get_public_key("k"), index=1)
    assert key_server.count("k") == 2


@pytest.mark.anyio
async def test_failure_is_remembered_for_failure_ttl_then_retried(key_server: KeyServer) -> None:
    key_server.replies["/k"] = Reply(status=500)
    provider = AtlassianKeyProvider(base_url=key_server.url, failure_ttl=0.3)
    with pytest.raises(AuthError) as caught:
        await provider.get_public_key("k")
    key_error(caught, 503)
    key_server.serve_key("k", PEM)
    with pytest.raises(AuthError) as caught:
        await provider.get_public_key("k")
    key_error(caught, 503)
    assert key_server.count("k") == 1
    await asyncio.sleep(0.5)
    assert is_our_key(await provider.get_public_key("k"))
    assert key_server.count("k") == 2


@pytest.mark.anyio
async def test_concurrent_requests_for_one_kid_share_one_fetch(key_server: KeyServer) -> None:
    key_server.serve_key("k", PEM, delay=0.2)
    provider = AtlassianKeyProvider(base_url=key_server.url)
    keys = await asyncio.gather(*(provider.get_public_key("k") for _ in range(10)))
    assert all(key is keys[0] for key in keys)
    assert is_our_key(keys[0])
    assert key_server.count("k") == 1


@pytest.mark.anyio
async def test_concurrent_requests_share_one_failure(key_server: KeyServer) -> None:
    key_server.replies["/k"] = Reply(status=404, delay=0.2)
    provider = AtlassianKeyProvider(base_url=key_server.url)
    results = await asyncio.gather(*(provider.get_public_key("k") for _ in range(10)), return_exceptions=True)
    errors = [result for result in results if isinstance(result, AuthError)]
    assert len(errors) == 10
    assert {(error.code, error.status_code) for error in errors} == {(AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY, 401)}
    assert key_server.count("k") == 1


@pytest.mark.anyio
async def test_cancelled_fetch_fails_its_waiters_and_is_not_remembered(key_server: KeyServer) -> None:
    """Cancelling the request that fetches must not hang the others, nor cache a failure."""
    key_server.serve_key("k", PEM, delay=10)
    provider = AtlassianKeyProvider(base_url=key_server.url)
    fetching = asyncio.ensure_future(provider.get_public_key("k"))
    assert await asyncio.to_thread(key_server.received.wait, 5.0)
    waiting = asyncio.ensure_future(provider.get_public_key("k"))
    await asyncio.sleep(0.05)
    fetching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetching
    with pytest.raises(AuthError) as caught:
        await waiting
    assert caught.value.code is AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY
    key_server.serve_key("k", PEM)
    assert is_our_key(await provider.get_public_key("k"))
    assert key_server.count("k") == 2


@pytest.mark.anyio
async def test_hung_server_fails_after_the_timeout(key_server: KeyServer) -> None:
    key_server.serve_key("k", PEM, delay=30)
    with pytest.raises(AuthError) as caught:
        await AtlassianKeyProvider(base_url=key_server.url, timeout=0.3).get_public_key("k")
    key_error(caught, 503)


@pytest.mark.anyio
async def test_refused_connection_is_an_outage() -> None:
    provider = AtlassianKeyProvider(base_url=f"http://127.0.0.1:{free_loopback_port()}")
    with pytest.raises(AuthError) as caught:
        await provider.get_public_key("k")
    key_error(caught, 503)


@pytest.mark.anyio
async def test_unknown_kid_is_a_401(key_server: KeyServer) -> None:
    with pytest.raises(AuthError) as caught:
        await AtlassianKeyProvider(base_url=key_server.url).get_public_key("k")
    key_error(caught, 401)
    assert key_server.requests == ["/k"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=b"this is not a key"), id="garbage"),
        pytest.param(Reply(body=b""), id="empty"),
        pytest.param(Reply(body=b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), id="broken-pem"),
        pytest.param(Reply(body=ec_public_pem()), id="ec-key"),
        pytest.param(Reply(body=public_pem(rsa_key(1024))), id="rsa-1024"),
        pytest.param(Reply(body=PEM + b" " * (16 * 1024)), id="oversized"),
        pytest.param(Reply(body=PEM + b"\n" * (64 * 1024), chunk_size=1024), id="oversized-streamed"),
    ],
)
async def test_unusable_answers_are_refused(key_server: KeyServer, reply: Reply) -> None:
    key_server.replies["/k"] = reply
    with pytest.raises(AuthError) as caught:
        await AtlassianKeyProvider(base_url=key_server.url).get_public_key("k")
    assert caught.value.code is AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY


@pytest.mark.anyio
async def test_streamed_key_within_the_limit_is_accepted(key_server: KeyServer) -> None:
    key_server.replies["/k"] = Reply(body=PEM, chunk_size=64)
    assert is_our_key(await AtlassianKeyProvider(base_url=key_server.url).get_public_key("k"))


@pytest.mark.anyio
async def test_redirects_are_not_followed(key_server: KeyServer) -> None:
    """A CDN answer must come from the CDN itself, not from wherever it points."""
    key_server.serve_key("real", PEM)
    key_server.replies["/k"] = Reply(status=302, location=f"{key_server.url}/real")
    with pytest.raises(AuthError) as caught:
        await AtlassianKeyProvider(base_url=key_server.url).get_public_key("k")
    key_error(caught, 401)
    assert key_server.requests == ["/k"]


@pytest.mark.anyio
async def test_owned_client_is_opened_by_async_with_and_closed_after(key_server: KeyServer) -> None:
    key_server.serve_key("k", PEM)
    key_server.serve_key("k2", PEM)
    provider = AtlassianKeyProvider(base_url=key_server.url)
    async with provider as opened:
        assert opened is provider
        client = provider._client  # made when opened: the first install of a burst does not wait for it
        assert isinstance(client, httpx2.AsyncClient)
        assert not client.is_closed
        assert is_our_key(await provider.get_public_key("k"))
        assert is_our_key(await provider.get_public_key("k2"))
        assert provider._client is client  # one client for the provider's lifetime
    assert client.is_closed
    assert provider._client is None
    await provider.aclose()  # idempotent


@pytest.mark.anyio
async def test_a_closed_provider_fetches_with_a_client_of_its_own(key_server: KeyServer) -> None:
    provider = AtlassianKeyProvider(base_url=key_server.url)
    async with provider:
        pass
    assert provider._client is None
    assert not provider._owns_client
    key_server.serve_key("k", PEM)
    assert is_our_key(await provider.get_public_key("k"))  # closed: a client of its own for the fetch
    assert provider._client is None
