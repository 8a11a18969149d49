"""Unit tests of `JwksKeyProvider`: one fetch for every kid, rotation, junk kids, outages, weak keys.

The JWKS is served by `httpx2.MockTransport` (or a loopback server) from real RSA
keys; time is a fake monotonic clock the tests move forward.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fastapi_connect_auth import AuthError, AuthErrorCode, ForgeKeyProvider, JwksKeyProvider
from fastapi_connect_auth.testing import FakeForge, generate_rsa_key

URL = "https://forge.example.test/.well-known/jwks.json"


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"k1": generate_rsa_key(), "k2": generate_rsa_key()}


def jwk(kid: str, key: rsa.RSAPrivateKey, **extra: Any) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A JWKS endpoint whose answer a test changes; counts its requests."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks: dict[str, Any] | None = jwks
        self.status = 200
        self.requests = 0
        self.delay = 0.0

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        if self.delay:
            await anyio.sleep(self.delay)
        if self.status != 200:
            return httpx2.Response(self.status, text="down")
        return httpx2.Response(200, json=self.jwks)

    def provider(self, clock: Callable[[], float], **options: Any) -> JwksKeyProvider:
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))
        return JwksKeyProvider(client=client, clock=clock, **options)


def public(key: rsa.RSAPrivateKey) -> Any:
    return key.public_key().public_numbers()


async def refused(provider: JwksKeyProvider, kid: str) -> AuthError:
    with pytest.raises(AuthError) as error:
        await provider.get_signing_key(kid, URL)
    assert error.value.code is AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY
    return error.value


def test_is_a_forge_key_provider() -> None:
    assert isinstance(JwksKeyProvider(), ForgeKeyProvider)


@pytest.mark.anyio
async def test_fifty_requests_one_fetch(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    provider = server.provider(Clock())
    found = [await provider.get_signing_key("k1", URL) for _ in range(50)]
    assert server.requests == 1
    assert all(key.public_numbers() == public(keys["k1"]) for key in found)


@pytest.mark.anyio
async def test_concurrent_requests_share_one_fetch(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"]), jwk("k2", keys["k2"])]})
    server.delay = 0.05
    provider = server.provider(Clock())
    found = await asyncio.gather(*(provider.get_signing_key(f"k{1 + n % 2}", URL) for n in range(20)))
    assert server.requests == 1
    assert len(found) == 20


@pytest.mark.anyio
async def test_rotation_one_refetch(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    clock = Clock()
    provider = server.provider(clock, refetch_cooldown=30)
    await provider.get_signing_key("k1", URL)
    server.jwks = {"keys": [jwk("k1", keys["k1"]), jwk("k2", keys["k2"])]}
    clock.now += 31
    assert (await provider.get_signing_key("k2", URL)).public_numbers() == public(keys["k2"])
    assert (await provider.get_signing_key("k1", URL)).public_numbers() == public(keys["k1"])
    assert server.requests == 2


@pytest.mark.anyio
async def test_junk_kids_at_most_one_refetch_per_cooldown(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    clock = Clock()
    provider = server.provider(clock, refetch_cooldown=30)
    await provider.get_signing_key("k1", URL)
    clock.now += 31
    for n in range(20):
        error = await refused(provider, f"junk-{n}")
        assert error.status_code == 401
    assert server.requests == 2  # the first fetch, then one refetch; the cooldown holds the other 19
    clock.now += 31
    for n in range(20):
        await refused(provider, f"junk-{n}")
    assert server.requests == 3
    assert (await provider.get_signing_key("k1", URL)).public_numbers() == public(keys["k1"])


@pytest.mark.anyio
async def test_expired_cache_is_refetched(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    clock = Clock()
    provider = server.provider(clock, cache_ttl=60)
    await provider.get_signing_key("k1", URL)
    clock.now += 61
    await provider.get_signing_key("k1", URL)
    assert server.requests == 2


@pytest.mark.anyio
async def test_outage_with_cached_keys_keeps_serving_then_gives_up(
    keys: dict[str, rsa.RSAPrivateKey], caplog: pytest.LogCaptureFixture
) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    clock = Clock()
    provider = server.provider(clock, cache_ttl=60, refetch_cooldown=10, max_stale=600)
    await provider.get_signing_key("k1", URL)
    server.status = 503
    clock.now += 61
    for _ in range(5):
        assert (await provider.get_signing_key("k1", URL)).public_numbers() == public(keys["k1"])
    assert server.requests == 2  # one failed refetch; the cooldown spares the endpoint
    assert "Forge JWKS unavailable" in caplog.text
    clock.now += 600
    error = await refused(provider, "k1")
    assert error.status_code == 503
    server.status = 200
    clock.now += 11
    assert (await provider.get_signing_key("k1", URL)).public_numbers() == public(keys["k1"])


@pytest.mark.anyio
async def test_outage_without_keys_is_503(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    server.status = 500
    provider = server.provider(Clock())
    assert (await refused(provider, "k1")).status_code == 503
    assert (await refused(provider, "k1")).status_code == 503  # within the cooldown: no second fetch
    assert server.requests == 1


async def _unreachable(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("refused", request=request)


async def _slow(request: httpx2.Request) -> httpx2.Response:
    await anyio.sleep(1)
    return httpx2.Response(200, json={"keys": []})


async def _huge(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=b" " * (65 * 1024))


@pytest.mark.anyio
@pytest.mark.parametrize("handler", [_unreachable, _slow, _huge], ids=["unreachable", "timeout", "huge"])
async def test_unreachable_slow_or_huge_endpoint_is_503(handler: Any) -> None:
    provider = JwksKeyProvider(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)), timeout=0.1)
    assert (await refused(provider, "k1")).status_code == 503


@pytest.mark.anyio
@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"keys": "nope"}',
        b'{"keys": []}',
        b'{"keys": [1, "x", null]}',
        b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}',
    ],
)
async def test_unusable_documents_are_an_outage(document: bytes) -> None:
    async def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=document)

    provider = JwksKeyProvider(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    assert (await refused(provider, "k1")).status_code == 503


@pytest.mark.anyio
async def test_weak_keys_wrong_use_and_private_keys_are_dropped(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a weak key, to be dropped
    private_jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["k2"])), "kid": "private"}
    server = Server(
        {
            "keys": [
                jwk("k1", keys["k1"]),
                jwk("weak", weak),
                jwk("enc", keys["k2"], use="enc"),
                jwk("rs512", keys["k2"], alg="RS512"),
                private_jwk,
            ]
        }
    )
    provider = server.provider(Clock())
    await provider.get_signing_key("k1", URL)
    for kid in ("weak", "enc", "rs512", "private"):
        assert (await refused(provider, kid)).status_code == 401


@pytest.mark.anyio
async def test_redirects_are_not_followed(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    async def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(302, headers={"Location": "https://attacker.example/jwks.json"})

    provider = JwksKeyProvider(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    assert (await refused(provider, "k1")).status_code == 503


@pytest.mark.anyio
async def test_own_client_over_loopback(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    forge = FakeForge(private_key=keys["k1"])
    with forge.serve_jwks() as served:
        async with JwksKeyProvider() as provider:
            key = await provider.get_signing_key(forge.kid, served.url)
        without_client = JwksKeyProvider()
        await without_client.get_signing_key(forge.kid, served.url)
    assert key.public_numbers() == public(keys["k1"])
    assert served.requests == 2


@pytest.mark.anyio
async def test_a_cancelled_fetch_holds_the_url_back_then_the_next_caller_fetches(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    """Cancelling (a client that hangs up) is a failure like any other: it cannot be used to refetch at will."""
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    server.delay = 0.2
    clock = Clock()
    provider = server.provider(clock)
    with anyio.move_on_after(0.05):
        await provider.get_signing_key("k1", URL)
    server.delay = 0
    assert (await refused(provider, "k1")).status_code == 503
    clock.now += 31
    assert (await provider.get_signing_key("k1", URL)).public_numbers() == public(keys["k1"])
    assert server.requests == 2


# -- what a hostile stream of tokens (or a hostile key server) could grow --------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kid",
    [["k1"], {"k": 1}, 7, True, "", None, "k" * 300],
    ids=["list", "object", "number", "bool", "empty", "missing", "too long"],
)
async def test_entries_whose_kid_is_not_a_string_are_skipped(keys: dict[str, rsa.RSAPrivateKey], kid: Any) -> None:
    bad = {key: value for key, value in jwk("x", keys["k2"]).items() if key != "kid"}
    if kid is not None:
        bad["kid"] = kid
    server = Server({"keys": [bad, jwk("k1", keys["k1"])]})
    provider = server.provider(Clock())
    for _ in range(20):
        assert (await provider.get_signing_key("k1", URL)).public_numbers() == public(keys["k1"])
    assert server.requests == 1


@pytest.mark.anyio
async def test_a_set_of_only_unusable_kids_is_an_outage_fetched_once_per_cooldown(
    keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    server = Server({"keys": [{**jwk("x", keys["k1"]), "kid": ["k1"]}]})
    clock = Clock()
    provider = server.provider(clock)
    for _ in range(20):
        assert (await refused(provider, "k1")).status_code == 503
    assert server.requests == 1
    clock.now += 31
    await refused(provider, "k1")
    assert server.requests == 2


def _answer(
    status: int = 200, content: bytes = b"", headers: dict[str, str] | None = None, stream: bool = False
) -> Any:
    async def handle(request: httpx2.Request) -> httpx2.Response:
        if stream:
            return httpx2.Response(status, headers=headers, stream=httpx2.ByteStream(content))
        return httpx2.Response(status, headers=headers, content=content)

    return handle


FAILURES = {
    "500": _answer(500, b"down"),
    "404": _answer(404, b"gone"),
    "429": _answer(429, b"slow down"),
    "redirect": _answer(302, headers={"Location": "https://elsewhere.example.test/jwks.json"}),
    "not JSON": _answer(content=b"<html>"),
    "NaN": _answer(content=b'{"keys": [NaN]}'),
    "no usable key": _answer(content=b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}'),
    "too large, declared": _answer(content=b" " * (65 * 1024)),
    "too large, streamed": _answer(content=b" " * (65 * 1024), stream=True),
    "gzip": _answer(content=gzip.compress(b'{"keys": []}'), headers={"Content-Encoding": "gzip"}, stream=True),
    "unreachable": _unreachable,
    "timeout": _slow,
}


@pytest.mark.anyio
@pytest.mark.parametrize("failure", FAILURES)
async def test_every_failure_holds_the_url_back_for_the_cooldown(failure: str) -> None:
    requests: list[httpx2.Request] = []

    async def handle(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        response: httpx2.Response = await FAILURES[failure](request)
        return response

    clock = Clock()
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    provider = JwksKeyProvider(client=client, clock=clock, timeout=0.05)
    for _ in range(5):
        assert (await refused(provider, "k1")).status_code == 503
    assert len(requests) == 1
    assert requests[0].headers["Accept-Encoding"] == "identity"
    assert provider.key_sets == 0  # made only from a fetch that succeeded
    clock.now += 31
    await refused(provider, "k1")
    assert len(requests) == 2


@pytest.mark.anyio
async def test_a_gzip_bomb_is_refused_unread() -> None:
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)
    pulled: list[int] = []

    class Bomb(httpx2.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for start in range(0, len(bomb), 4096):
                pulled.append(start)
                yield bomb[start : start + 4096]

    async def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"Content-Encoding": "gzip"}, stream=Bomb())

    provider = JwksKeyProvider(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    assert "compressed" in (await refused(provider, "k1")).message
    assert pulled == []


@pytest.mark.anyio
async def test_key_sets_are_bounded_least_recently_used_first_out(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    provider = server.provider(Clock(), max_key_sets=2)
    urls = [f"https://keys.example.test/{name}/jwks.json" for name in "abc"]
    await provider.get_signing_key("k1", urls[0])
    await provider.get_signing_key("k1", urls[1])
    await provider.get_signing_key("k1", urls[0])  # a is the most recently used now
    await provider.get_signing_key("k1", urls[2])  # b goes
    assert (provider.key_sets, server.requests) == (2, 3)
    await provider.get_signing_key("k1", urls[0])
    assert server.requests == 3
    await provider.get_signing_key("k1", urls[1])
    assert server.requests == 4


@pytest.mark.anyio
async def test_repeated_hits_on_one_set_keep_it_most_recently_used(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    """The set the last call served is read without the LRU; a look-up of another set in between (here a kid it
    does not have) makes the next hit go through the LRU again, so the same set is evicted as without the shortcut."""
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    provider = server.provider(Clock(), max_key_sets=2)
    urls = [f"https://keys.example.test/{name}/jwks.json" for name in "abc"]
    for url in (urls[0], urls[1], urls[0], urls[0]):
        served = await provider.get_signing_key("k1", url)
        assert served.public_numbers() == public(keys["k1"])
    assert server.requests == 2
    with pytest.raises(AuthError):
        await provider.get_signing_key("k9", urls[1])  # b is the most recently used now, without the kid
    await provider.get_signing_key("k1", urls[0])  # a again, through the LRU
    await provider.get_signing_key("k1", urls[0])  # and from the shortcut
    requests = server.requests
    await provider.get_signing_key("k1", urls[2])  # c comes in: b goes, not a
    assert server.requests == requests + 1
    await provider.get_signing_key("k1", urls[0])
    assert server.requests == requests + 1
    await provider.get_signing_key("k1", urls[1])
    assert server.requests == requests + 2


@pytest.mark.anyio
async def test_one_fetch_budget_is_shared_by_every_url(keys: dict[str, rsa.RSAPrivateKey]) -> None:
    server = Server({"keys": [jwk("k1", keys["k1"])]})
    clock = Clock()
    provider = server.provider(clock, fetch_budget=3, fetch_budget_window=60.0)
    statuses, reasons = [], set()
    for index in range(10):
        try:
            await provider.get_signing_key("k1", f"https://keys.example.test/{index}/jwks.json")
            statuses.append(200)
        except AuthError as error:
            statuses.append(error.status_code)
            reasons.add(error.message)
    assert reasons == {"Could not obtain Forge's signing keys: the JWKS fetch budget is spent; retry shortly."}
    assert statuses == [200] * 3 + [503] * 7
    assert server.requests == 3
    clock.now += 20  # one more fetch earned
    await provider.get_signing_key("k1", "https://keys.example.test/3/jwks.json")
    assert server.requests == 4


def test_the_bounds_must_be_positive() -> None:
    for option in ("max_key_sets", "fetch_budget", "fetch_budget_window"):
        with pytest.raises(ValueError, match="positive"):
            JwksKeyProvider(**{option: 0})
