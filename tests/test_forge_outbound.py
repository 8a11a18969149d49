"""Integration tests of calling the product with Forge tokens: bearer clients, the token store, offline user tokens.

The product API and the GraphQL gateway are `FakeForge`'s (`httpx2.MockTransport`);
invocations come from verifying FITs the kit minted with PyJWT.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fastapi_connect_auth import (
    ForgeBearerAuth,
    ForgeInvocation,
    ForgeStoredToken,
    InMemoryForgeTokenStore,
    OfflineUserTokens,
    ProductAPIError,
    RetryPolicy,
    TokenRequestError,
    UnsafeRedirectError,
    UnsafeRequestError,
    forge_product_client,
    remember_forge_tokens,
    stored_forge_client,
)
from fastapi_connect_auth._outbound._forge import token_expiry
from fastapi_connect_auth.testing import FakeForge, generate_rsa_key
from fastapi_connect_auth.testing._forge import FitShape

NOW = 1_700_000_000.0
INSTALLATION = "ari:cloud:ecosystem::installation/1"
BASE = "https://api.atlassian.com/ex/jira/c"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key()


@pytest.fixture
def forge(signing_key: rsa.RSAPrivateKey) -> FakeForge:
    return FakeForge(private_key=signing_key, clock=lambda: NOW)


async def invocation(
    forge: FakeForge, *, system: str | None = None, user: str | None = None, shape: FitShape = "ui"
) -> ForgeInvocation:
    config = forge.forge_auth(clock=lambda: NOW)
    return await config.verify_invocation(forge.mint_fit(shape), system_token=system, user_token=user)


# -- clients --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_system_and_user_tokens_reach_the_product(forge: FakeForge) -> None:
    call = await invocation(forge, system=forge.system_token(), user=forge.user_token())
    async with forge_product_client(call, transport=forge.api_transport) as app:
        as_app = await app.get("/rest/api/3/myself")
    async with forge_product_client(call, as_user=True, transport=forge.api_transport) as user:
        as_user = await user.get("/rest/api/3/myself")
    assert as_app.json() == {"accountId": "app-system-user", "tokenKind": "system"}
    assert as_user.json() == {"accountId": forge.account_id, "tokenKind": "user"}
    assert [(call.method, call.url, call.status, call.token_kind) for call in forge.api_calls] == [
        ("GET", f"/ex/jira/{forge.cloud_id}/rest/api/3/myself", 200, "system"),
        ("GET", f"/ex/jira/{forge.cloud_id}/rest/api/3/myself", 200, "user"),
    ]


@pytest.mark.anyio
async def test_missing_token_is_a_clear_error(forge: FakeForge) -> None:
    call = await invocation(forge, system=forge.system_token())
    with pytest.raises(ProductAPIError, match="x-forge-oauth-user"):
        forge_product_client(call, as_user=True)
    with pytest.raises(ProductAPIError, match="x-forge-oauth-system"):
        forge_product_client(await invocation(forge))


@pytest.mark.anyio
async def test_token_goes_to_the_api_origin_only(forge: FakeForge) -> None:
    system = forge.system_token()
    call = await invocation(forge, system=system)
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("/moved"):
            return httpx2.Response(302, headers={"Location": "https://attacker.example/steal"})
        return httpx2.Response(200)

    async with forge_product_client(call, transport=httpx2.MockTransport(handle), retries=None) as client:
        with pytest.raises(UnsafeRequestError) as refused:
            await client.get("https://attacker.example/rest/api/3/myself")
        with pytest.raises(UnsafeRedirectError) as redirected:
            await client.get("/moved")
    assert [request.url.host for request in seen] == ["api.atlassian.com"]
    assert system not in str(refused.value)
    assert system not in str(redirected.value)
    assert redirected.value.location == "https://attacker.example/steal"


def test_factory_options_and_repr_hide_the_token() -> None:
    auth = ForgeBearerAuth(api_base_url="https://api.atlassian.com/ex/jira/c", token="secret-token")
    assert "secret-token" not in repr(auth)
    with pytest.raises(ValueError, match="non-empty"):
        ForgeBearerAuth(api_base_url="https://api.atlassian.com/ex/jira/c", token="")
    with pytest.raises(UnsafeRequestError):
        ForgeBearerAuth(api_base_url="http://api.atlassian.com/ex/jira/c", token="t")


@pytest.mark.anyio
async def test_factory_refuses_options_it_sets(forge: FakeForge) -> None:
    call = await invocation(forge, system=forge.system_token())
    with pytest.raises(ValueError, match="follow_redirects"):
        forge_product_client(call, follow_redirects=True)
    with pytest.raises(ValueError, match="set by the factory"):
        forge_product_client(call, base_url="https://elsewhere.example")


def test_sync_client_with_the_auth(forge: FakeForge) -> None:
    auth = ForgeBearerAuth(api_base_url=forge.api_base_url, token=forge.system_token())
    with httpx2.Client(auth=auth, transport=forge.api_transport, base_url=forge.api_base_url) as client:
        assert client.get("/rest/api/3/myself").json()["tokenKind"] == "system"


# -- the token store ------------------------------------------------------------------------


def stored(token: str, expires_at: float, base: str = "https://api.atlassian.com/ex/jira/c") -> ForgeStoredToken:
    return ForgeStoredToken(token, base, expires_at)


@pytest.mark.anyio
async def test_store_keeps_the_latest_received_token_and_never_returns_a_nearly_expired_one() -> None:
    clock = [NOW]
    store = InMemoryForgeTokenStore(leeway=60, clock=lambda: clock[0])
    await store.put(INSTALLATION, None, ForgeStoredToken("first", BASE, NOW + 7200, received_at=NOW))
    await store.put(INSTALLATION, None, ForgeStoredToken("latest", BASE, NOW + 600, received_at=NOW + 1))
    await store.put(INSTALLATION, None, ForgeStoredToken("late", BASE, NOW + 9000, received_at=NOW + 0.5))
    assert (await store.get(INSTALLATION, None)) == ForgeStoredToken("latest", BASE, NOW + 600, received_at=NOW + 1)
    assert await store.get(INSTALLATION, "someone") is None
    clock[0] = NOW + 541
    assert await store.get(INSTALLATION, None) is None
    assert "latest" not in repr(stored("latest", NOW))


@pytest.mark.anyio
async def test_store_discards_only_the_token_that_failed() -> None:
    store = InMemoryForgeTokenStore(clock=lambda: NOW)
    await store.put(INSTALLATION, None, stored("old", NOW + 600))
    await store.put(INSTALLATION, None, stored("new", NOW + 3600))
    await store.discard(INSTALLATION, None, "old")
    assert (await store.get(INSTALLATION, None)) is not None
    await store.discard(INSTALLATION, None, "new")
    assert await store.get(INSTALLATION, None) is None


@pytest.mark.anyio
async def test_remembered_tokens_serve_calls_later_and_a_401_drops_them(forge: FakeForge) -> None:
    system, user = forge.system_token(exp=NOW + 3600), forge.user_token(exp=NOW + 1800)
    store = InMemoryForgeTokenStore(clock=lambda: NOW)
    ui_call = await invocation(forge, system=system, user=user)
    assert not await remember_forge_tokens(store, ui_call, clock=lambda: NOW)  # a browser may have sent it
    assert await store.get(ui_call.installation_id, None) is None
    call = await invocation(forge, system=system, shape="trigger")
    assert not await remember_forge_tokens(store, call, module_keys={"other-trigger"}, clock=lambda: NOW)
    assert await remember_forge_tokens(store, call, module_keys={"hourly-sync"}, clock=lambda: NOW)
    kept = ForgeStoredToken(system, forge.api_base_url, NOW + 3600, received_at=NOW)
    assert (await store.get(call.installation_id, None)) == kept
    assert await store.get(call.installation_id, forge.account_id) is None  # user tokens are never kept

    async with await stored_forge_client(store, call.installation_id, transport=forge.api_transport) as later:
        assert (await later.get("/rest/api/3/myself")).status_code == 200
        forge.revoke(system)
        assert (await later.get("/rest/api/3/myself")).status_code == 401
    assert await store.get(call.installation_id, None) is None
    with pytest.raises(ProductAPIError, match="next invocation"):
        await stored_forge_client(store, call.installation_id)


@pytest.mark.anyio
async def test_invocation_client_with_a_store_drops_a_rejected_token(forge: FakeForge) -> None:
    system = forge.system_token(exp=NOW + 3600)
    call = await invocation(forge, system=system, shape="event")
    store = InMemoryForgeTokenStore(clock=lambda: NOW)
    assert await remember_forge_tokens(store, call, clock=lambda: NOW)
    forge.revoke(system)
    async with forge_product_client(call, store=store, transport=forge.api_transport) as client:
        assert (await client.get("/rest/api/3/myself")).status_code == 401
    assert await store.get(call.installation_id, None) is None


@pytest.mark.anyio
async def test_tokens_without_a_readable_exp_are_not_kept(forge: FakeForge) -> None:
    call = await invocation(forge, system="opaque-token", user="also.not.jwt", shape="event")
    store = InMemoryForgeTokenStore(clock=lambda: NOW)
    assert not await remember_forge_tokens(store, call, clock=lambda: NOW)
    expired = await invocation(forge, system=forge.system_token(exp=NOW - 1), shape="event")
    assert not await remember_forge_tokens(store, expired, clock=lambda: NOW)
    assert await store.get(call.installation_id, None) is None
    assert await store.get(call.installation_id, forge.account_id) is None


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (jwt.encode({"exp": 123}, "k" * 32, "HS256"), 123.0),
        (jwt.encode({"exp": 1.5}, "k" * 32, "HS256"), 1.5),
        (jwt.encode({"exp": "soon"}, "k" * 32, "HS256"), None),
        (jwt.encode({"exp": True}, "k" * 32, "HS256"), None),
        (jwt.encode({"sub": "x"}, "k" * 32, "HS256"), None),
        ("a.!!!.c", None),
        ("a.W10.c", None),  # a JSON list
        ("opaque", None),
        ("a." + "A" * 9000 + ".c", None),
    ],
)
def test_token_expiry(token: str, expected: float | None) -> None:
    assert token_expiry(token) == expected


# -- offline user tokens --------------------------------------------------------------------


@pytest.mark.anyio
async def test_offline_user_token_is_cached_and_acts_as_the_user(forge: FakeForge) -> None:
    call = await invocation(forge, system=forge.system_token())
    clock = [NOW]
    tokens = OfflineUserTokens(client=httpx2.AsyncClient(transport=forge.api_transport), clock=lambda: clock[0])
    contexts = [f"ari:cloud:jira::site/{forge.cloud_id}"]
    async with await tokens.client(call, "557058:other", context_ids=contexts, transport=forge.api_transport) as jira:
        assert (await jira.get("/rest/api/3/myself")).json()["tokenKind"] == "offline"
    await tokens.client(call, "557058:other", context_ids=contexts)
    graphql = [call for call in forge.api_calls if call.url == "/graphql"]
    assert [(call.status, call.token_kind) for call in graphql] == [(200, "system")]
    clock[0] = NOW + 3600
    await tokens.client(call, "557058:other", context_ids=contexts)
    assert len([call for call in forge.api_calls if call.url == "/graphql"]) == 2


@pytest.mark.anyio
async def test_offline_tokens_single_flight_and_401_forgets(forge: FakeForge) -> None:
    requests = 0
    gate = asyncio.Event()

    async def handle(request: httpx2.Request) -> httpx2.Response:
        nonlocal requests
        requests += 1
        await gate.wait()
        return forge.answer_api_request(request)

    tokens = OfflineUserTokens(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)), clock=lambda: NOW)
    system = forge.system_token()
    ask = {**ask_for("ari:x", api_base_url=forge.api_base_url), "system_token": system}
    waiting = [asyncio.ensure_future(tokens.token(**ask)) for _ in range(10)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*waiting)
    assert requests == 1
    assert len(set(results)) == 1

    call = await invocation(forge, system=system)
    forge.revoke(results[0])
    tokens_for_call = OfflineUserTokens(client=httpx2.AsyncClient(transport=forge.api_transport), clock=lambda: NOW)
    for_call = {**ask, "installation_id": call.installation_id}
    async with await tokens_for_call.client(call, "a1", context_ids=["ari:x"], transport=forge.api_transport) as jira:
        first = await tokens_for_call.token(**for_call)
        forge.revoke(first)
        assert (await jira.get("/rest/api/3/myself")).status_code == 401
    assert await tokens_for_call.token(**for_call) != first  # the 401 dropped it: a new one was asked for


def graphql_answer(status: int, body: Any) -> OfflineUserTokens:
    async def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    return OfflineUserTokens(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)), clock=lambda: NOW)


SYSTEM = "system-token-that-must-never-leak"
PRODUCTION_API = "https://api.atlassian.com/ex/jira/c0ffee"


def ask_for(*context_ids: str, api_base_url: str = PRODUCTION_API, **more: Any) -> dict[str, Any]:
    """The keyword arguments of `OfflineUserTokens.token` for user a1 of INSTALLATION."""
    return {
        "system_token": SYSTEM,
        "installation_id": INSTALLATION,
        "account_id": "a1",
        "context_ids": list(context_ids),
        "api_base_url": api_base_url,
        **more,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {}, "answered 500"),
        (200, {"data": None, "errors": [{"message": f"bad token {SYSTEM}\n"}]}, "bad token [redacted]?"),
        (
            200,
            {"data": {"offlineUserAuthToken": {"success": False, "errors": [{"message": "no consent"}]}}},
            "no consent",
        ),
        (200, {"data": {"offlineUserAuthToken": {"success": True, "authToken": {"token": "t"}}}}, "no ttl between"),
        (200, {"data": {"offlineUserAuthToken": {"success": True, "authToken": None}}}, "has no token"),
        *(
            (200, {"data": {"offlineUserAuthToken": {"success": True, "authToken": {"token": "t", "ttl": ttl}}}}, why)
            for ttl, why in [
                (0, "no ttl between 0 and 14400"),
                (-60, "no ttl between"),
                (14401, "no ttl between"),
                (1e300, "no ttl between"),
                ("900", "no ttl between"),
                (True, "no ttl between"),
            ]
        ),
        (200, ["not", "an", "object"], "did not issue a token."),
    ],
)
async def test_offline_token_errors_name_the_cause_without_secrets(
    status: int, body: Any, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = graphql_answer(status, body)
    with caplog.at_level(logging.DEBUG), pytest.raises(TokenRequestError) as refused:
        await tokens.token(**ask_for("ari:x"))
    assert message in str(refused.value)
    assert SYSTEM not in str(refused.value)
    assert SYSTEM not in caplog.text


@pytest.mark.anyio
async def test_offline_token_unreachable_gateway() -> None:
    async def handle(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    tokens = OfflineUserTokens(
        client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
        retries=RetryPolicy(async_sleep=wait, random=lambda: 0.5),
    )
    with pytest.raises(TokenRequestError, match="could not be reached"):
        await tokens.token(**ask_for("x"))
    assert waits == [2.0, 4.0, 8.0, 16.0]  # retried as Atlassian asks before giving up
    unreachable = OfflineUserTokens(
        graphql_urls={"api.atlassian.com": "http://127.0.0.1:9/graphql"}, timeout=1, retries=None
    )
    with pytest.raises(TokenRequestError, match="could not be reached"):
        await unreachable.token(**ask_for("x"))


@pytest.mark.anyio
async def test_a_rate_limited_gateway_and_product_are_retried(forge: FakeForge) -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    retries = RetryPolicy(async_sleep=wait, random=lambda: 0.0)
    gateway = iter([httpx2.Response(429, headers={"Retry-After": "2"})])
    answer = {"data": {"offlineUserAuthToken": {"success": True, "authToken": {"token": "user-1", "ttl": 900}}}}

    async def graphql(request: httpx2.Request) -> httpx2.Response:
        return next(gateway, httpx2.Response(200, json=answer))

    tokens = OfflineUserTokens(client=httpx2.AsyncClient(transport=httpx2.MockTransport(graphql)), retries=retries)
    token = await tokens.token(**ask_for("x"))
    assert (token, waits) == ("user-1", [2.0])

    product = iter([httpx2.Response(429, headers={"Retry-After": "1"}), httpx2.Response(503)])
    sent: list[str] = []

    def api(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.headers["Authorization"])
        return next(product, httpx2.Response(200, json={"ok": True}))

    call = await invocation(forge, system=forge.system_token())
    async with forge_product_client(call, transport=httpx2.MockTransport(api), retries=retries) as client:
        assert (await client.get("/rest/api/3/myself")).json() == {"ok": True}
    assert waits == [2.0, 1.0, 2.8]  # Retry-After 1, then the second backoff (4 s) at its lowest jitter
    assert call.system_token is not None
    assert sent == [f"Bearer {call.system_token.get_secret_value()}"] * 3


@pytest.mark.anyio
async def test_offline_client_needs_the_system_token(forge: FakeForge) -> None:
    with pytest.raises(ProductAPIError, match="system token"):
        await OfflineUserTokens().client(await invocation(forge), "a1", context_ids=["x"])


@pytest.mark.anyio
@pytest.mark.parametrize("ttl", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_a_non_finite_ttl_is_refused_not_cached_for_ever(ttl: bytes) -> None:
    body = b'{"data": {"offlineUserAuthToken": {"success": true, "authToken": {"token": "t", "ttl": ' + ttl + b"}}}}"

    async def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body)

    tokens = OfflineUserTokens(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)), clock=lambda: NOW)
    with pytest.raises(TokenRequestError, match="did not issue a token"):
        await tokens.token(**ask_for("x"))


@pytest.mark.anyio
async def test_the_cache_key_includes_the_context_ids() -> None:
    asked: list[list[str]] = []

    async def handle(request: httpx2.Request) -> httpx2.Response:
        context_ids = json.loads(request.content)["variables"]["input"]["contextIds"]
        asked.append(context_ids)
        token = {"token": f"token-for-{'+'.join(context_ids)}", "ttl": 900}
        return httpx2.Response(200, json={"data": {"offlineUserAuthToken": {"success": True, "authToken": token}}})

    tokens = OfflineUserTokens(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)), clock=lambda: NOW)
    site_a, site_b = "ari:cloud:jira::site/a", "ari:cloud:jira::site/b"
    assert await tokens.token(**ask_for(site_a)) == f"token-for-{site_a}"
    assert await tokens.token(**ask_for(site_b)) == f"token-for-{site_b}"
    assert await tokens.token(**ask_for(site_a, site_b)) == await tokens.token(**ask_for(site_b, site_a, site_a))
    assert asked == [[site_a], [site_b], [site_a, site_b]]
    tokens.forget(INSTALLATION, "a1")
    await tokens.token(**ask_for(site_a))
    assert len(asked) == 4


def gateways_asked(**options: Any) -> tuple[OfflineUserTokens, list[str]]:
    urls: list[str] = []

    async def handle(request: httpx2.Request) -> httpx2.Response:
        urls.append(str(request.url))
        token = {"token": "user-token", "ttl": 900}
        return httpx2.Response(200, json={"data": {"offlineUserAuthToken": {"success": True, "authToken": token}}})

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    return OfflineUserTokens(client=client, clock=lambda: NOW, **options), urls


@pytest.mark.anyio
async def test_each_environment_is_asked_at_its_own_gateway() -> None:
    tokens, urls = gateways_asked(
        graphql_urls={"api.bitbucket.org": "https://gateway.bitbucket.example.test/graphql"},
        isolated_cloud_graphql_url="https://api.{ic_label}.example-ic.test/graphql",
    )
    await tokens.token(**ask_for("x", api_base_url="https://api.atlassian.com/ex/jira/c"))
    await tokens.token(**ask_for("x", api_base_url="https://api.stg.atlassian.com/ex/jira/c"))
    await tokens.token(**ask_for("x", api_base_url="https://api.bitbucket.org"))
    await tokens.token(**ask_for("x", api_base_url="https://api.atlassian.com/ex/jira/c", ic_label="orange"))
    assert urls == [
        "https://api.atlassian.com/graphql",
        "https://api.stg.atlassian.com/graphql",
        "https://gateway.bitbucket.example.test/graphql",
        "https://api.orange.example-ic.test/graphql",
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("api_base_url", "ic_label"),
    [
        ("https://api.bitbucket.org", None),
        ("https://api.atlassian.com/ex/jira/c", "orange"),
        ("https://api.atlassian.com.attacker.example/ex/jira/c", None),
        ("http://127.0.0.1:8123/ex/jira/c", None),
    ],
)
async def test_an_environment_without_a_known_gateway_is_refused(api_base_url: str, ic_label: str | None) -> None:
    tokens, urls = gateways_asked()
    with pytest.raises(TokenRequestError, match="No GraphQL gateway"):
        await tokens.token(**ask_for("x", api_base_url=api_base_url, ic_label=ic_label))
    assert urls == []


@pytest.mark.anyio
async def test_the_gateway_is_not_followed_through_a_redirect() -> None:
    sent: list[str] = []

    async def handle(request: httpx2.Request) -> httpx2.Response:
        sent.append(str(request.url))
        return httpx2.Response(307, headers={"Location": "https://attacker.example/graphql"})

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle), follow_redirects=True)
    tokens = OfflineUserTokens(client=client, retries=None)
    with pytest.raises(TokenRequestError, match="answered 307"):
        await tokens.token(**ask_for("x"))
    assert sent == ["https://api.atlassian.com/graphql"]


def test_gateways_and_lifetimes_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="https"):
        OfflineUserTokens(graphql_urls={"api.bitbucket.org": "http://gateway.example.test/graphql"})
    with pytest.raises(ValueError, match="ic_label"):
        OfflineUserTokens(isolated_cloud_graphql_url="https://gateway.example.test/graphql")
    for max_ttl in (0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_ttl"):
            OfflineUserTokens(max_ttl=max_ttl)
