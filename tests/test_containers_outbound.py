"""Forge Containers outbound: the egress proxy's clients, `forge-proxy-authorization`, installations, the kit's sidecar.

Each call goes to the kit's `FakeSidecar` (in-process, or on loopback where said),
which checks the header as the real proxy documents it and forwards product calls
to `FakeForge`'s product API with a system or a user token.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from fastapi_connect_auth import (
    ContainerSettings,
    ForgeContainerContext,
    ForgeContainerInvocation,
    ForgeContainers,
    ProductAPIError,
    RateLimitedError,
    RetryPolicy,
    UnsafeRequestError,
    proxy_authorization,
)
from fastapi_connect_auth.testing import FakeSidecar

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

pytestmark = pytest.mark.anyio

INSTALLATION = "8d5f651a-6b1c-4bd5-9a44-3f0c7d1e2a90"


def invocation(sidecar: FakeSidecar, kind: Any = "ui", **options: Any) -> ForgeContainerInvocation:
    """An invocation as `ForgeContainerRequest` returns it, for the sidecar's context of a new id."""
    invocation_id = sidecar.invocation(kind, **options)
    context = ForgeContainerContext.model_validate(sidecar.contexts[invocation_id])
    return ForgeContainerInvocation(context, invocation_id, web_trigger=kind == "webtrigger")


# -- the header's grammar -----------------------------------------------------------------------------


def test_the_header_for_an_invocation_and_offline() -> None:
    assert proxy_authorization(invocation_id="5f6c7b46-a1", as_="user") == "Forge as=user,id=5f6c7b46-a1"
    assert proxy_authorization(invocation_id="abc") == "Forge id=abc"
    assert proxy_authorization(installation_id=INSTALLATION, as_="app") == f"Forge as=app,installationId={INSTALLATION}"
    assert (
        proxy_authorization(
            installation_id=f"ari:cloud:ecosystem::installation/{INSTALLATION.upper()}",
            as_="user",
            account_id="557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
        )
        == f"Forge as=user,installationId={INSTALLATION},accountId=557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"invocation_id": "abc,as=user"},
        {"invocation_id": "abc\r\nx-other: 1"},
        {"invocation_id": "abc=def"},
        {"invocation_id": "abc def"},
        {"invocation_id": ""},
        {"installation_id": f"{INSTALLATION},as=user"},
        {"installation_id": "not-a-uuid"},
        {"installation_id": INSTALLATION.replace("-", "")},
        {"installation_id": INSTALLATION, "as_": "user", "account_id": "acc,id=other"},
        {"installation_id": INSTALLATION, "as_": "user", "account_id": "acc\nx"},
        {"installation_id": INSTALLATION, "as_": "app", "account_id": "acc"},
        {"installation_id": INSTALLATION, "as_": "admin"},
        {"installation_id": INSTALLATION, "invocation_id": "abc"},
        {},
    ],
)
def test_no_value_can_add_a_pair_or_a_header(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be|exactly one|is not|as_ is"):
        proxy_authorization(**options)


# -- product clients -----------------------------------------------------------------------------


async def test_as_the_user_of_the_invocation(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    call = invocation(fake_sidecar)

    async with containers.product_client(call, as_user=True) as jira:
        me = (await jira.get("/rest/api/3/myself")).json()

    assert me == {"accountId": fake_sidecar.account_id, "tokenKind": "user"}
    (sent,) = fake_sidecar.proxy_calls
    assert (sent.url, sent.authorization) == ("/jira/rest/api/3/myself", f"Forge as=user,id={call.invocation_id}")
    assert (sent.acting_as, sent.account_id) == ("user", fake_sidecar.account_id)
    assert fake_sidecar.forge.api_calls[-1].token_kind == "user"


async def test_as_the_app_for_an_event_and_a_web_trigger(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    for kind in ("event", "webtrigger"):
        call = invocation(fake_sidecar, kind)
        async with containers.product_client(call) as jira:
            assert (await jira.get("/rest/api/3/myself")).json()["tokenKind"] == "system"
        assert fake_sidecar.proxy_calls[-1].authorization == f"Forge as=app,id={call.invocation_id}"
        assert fake_sidecar.proxy_calls[-1].acting_as == "app"


async def test_as_the_user_without_one_sends_nothing(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    context = fake_sidecar.context_document("webtrigger")
    context["context"]["accountId"] = "557058:chosen-by-the-caller"
    web = ForgeContainerInvocation(ForgeContainerContext.model_validate(context), "abc", web_trigger=True)

    for call in (invocation(fake_sidecar, "event"), invocation(fake_sidecar, "ui", account_id=None), web):
        with pytest.raises(ProductAPIError, match="no user"):
            containers.product_client(call, as_user=True)
    assert fake_sidecar.calls == []


async def test_offline_as_the_app_and_as_an_account(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    uuid = fake_sidecar.forge.installation_uuid

    async with containers.offline_client(uuid) as jira:
        assert (await jira.get("/rest/api/3/myself")).json()["tokenKind"] == "system"
    async with containers.offline_client(fake_sidecar.installation_id, account_id="557058:someone") as jira:
        assert (await jira.get("/rest/api/3/myself")).json() == {"accountId": "557058:someone", "tokenKind": "user"}

    assert [call.authorization for call in fake_sidecar.proxy_calls] == [
        f"Forge as=app,installationId={uuid}",
        f"Forge as=user,installationId={uuid},accountId=557058:someone",
    ]
    with pytest.raises(ValueError, match="installation"):
        containers.offline_client("../../etc")


async def test_confluence_and_graphql_go_under_their_prefixes(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    call = invocation(fake_sidecar)

    async with containers.product_client(call, "confluence") as confluence:
        refused = await confluence.get("/wiki/rest/api/user/current")
    async with containers.product_client(call, "atlassian") as gateway:
        answered = await gateway.post("/graphql", json={"query": "{ me { user { name } } }"})

    assert refused.status_code == 403  # the fake's installation is in Jira
    assert (answered.status_code, answered.json()) == (200, {"data": {}})
    assert [sent.url for sent in fake_sidecar.proxy_calls] == [
        "/confluence/wiki/rest/api/user/current",
        "/atlassian/graphql",
    ]
    with pytest.raises(ValueError, match="product is"):
        containers.product_client(call, "bitbucket")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "/../proxy/evil.example.com/steal",
        "/%2e%2e/proxy/evil.example.com/steal",
        "/%2E%2E/proxy/evil.example.com/steal",
        "http://evil.example.com/jira/rest/api/3/myself",
        "http://localhost:7073/jira/rest/api/3/myself",
        "http://localhost:7072/jiraX/rest",
        "http://localhost:7072/invocation/context",
    ],
)
async def test_the_authorization_never_leaves_the_clients_prefix(fake_sidecar: FakeSidecar, url: str) -> None:
    containers = fake_sidecar.containers()

    async with containers.product_client(invocation(fake_sidecar)) as jira:
        with pytest.raises(UnsafeRequestError):
            await jira.get(url)

    assert fake_sidecar.calls == []
    assert repr(jira.auth) == "EgressProxyAuth(prefix='http://localhost:7072/jira')"


async def test_a_client_without_a_transport_reaches_the_network() -> None:
    app = f"ari:cloud:ecosystem::app/{INSTALLATION}"
    settings = ContainerSettings(
        "http://localhost:7072", app, f"ari:cloud:ecosystem::environment/{INSTALLATION}/{INSTALLATION}"
    )

    async with ForgeContainers(settings).offline_client(INSTALLATION) as jira:
        assert str(jira.base_url) == "http://localhost:7072/jira/"


async def test_client_options_that_would_weaken_it_are_refused(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    call = invocation(fake_sidecar)

    for options in ({"follow_redirects": True}, {"auth": None}, {"base_url": "http://x"}):
        with pytest.raises(ValueError, match=r"redirects|set by the factory"):
            containers.product_client(call, **options)


async def test_rate_limits_are_retried_with_the_retry_policy() -> None:
    answers = iter([httpx2.Response(429, headers={"Retry-After": "1"}), httpx2.Response(200, json={"ok": True})])
    seen: list[str] = []

    def proxy(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["forge-proxy-authorization"])
        return next(answers)

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = ContainerSettings(
        "http://localhost:7072",
        f"ari:cloud:ecosystem::app/{INSTALLATION}",
        f"ari:cloud:ecosystem::environment/{INSTALLATION}/{INSTALLATION}",
    )
    containers = ForgeContainers(settings, transport=httpx2.MockTransport(proxy))
    policy = RetryPolicy(async_sleep=sleep, random=lambda: 0.0)

    async with containers.offline_client(INSTALLATION, retries=policy) as jira:
        assert (await jira.get("/rest/api/3/myself")).json() == {"ok": True}

    assert waits == [1.0]
    assert seen == [f"Forge as=app,installationId={INSTALLATION}"] * 2
    throttled = ForgeContainers(settings, transport=httpx2.MockTransport(lambda request: httpx2.Response(429)))
    async with throttled.offline_client(INSTALLATION, retries=RetryPolicy(max_retries=0)) as jira:
        with pytest.raises(RateLimitedError):
            await jira.get("/rest/api/3/myself")


# -- external fetches -------------------------------------------------------------------------------


async def test_external_fetches_go_through_proxy_to_allowed_hosts(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    fake_sidecar.fetch_hosts.add("api.example.com")
    call = invocation(fake_sidecar)

    async with containers.fetch_client("api.example.com", call=call) as api:
        allowed = await api.get("/v1/things")
    uuid = fake_sidecar.forge.installation_uuid
    async with containers.fetch_client("other.example.com", installation_id=uuid) as other:
        blocked = await other.get("/")

    assert (allowed.status_code, allowed.json()["path"]) == (200, "/proxy/api.example.com/v1/things")
    assert fake_sidecar.proxy_calls[0].authorization == f"Forge as=app,id={call.invocation_id}"
    assert blocked.status_code == 403
    for host in ("evil.com/../x", "Evil.com", "a b", "", "x" * 300, "host:port"):
        with pytest.raises(UnsafeRequestError):
            containers.fetch_client(host, call=call)


# -- installations -----------------------------------------------------------------------------------


async def test_installations_are_listed_page_by_page(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    fake_sidecar.installations += [
        {"id": INSTALLATION, "installationContext": "ari:cloud:confluence::site/abc", "version": "12.0.3"},
        {"id": "b" * 8 + "-0000-4000-8000-" + "0" * 12, "installationContext": "ari:cloud:jira::site/def"},
    ]

    listed = [installation async for installation in containers.installations(page_size=2)]

    assert [installation.id for installation in listed] == [item["id"] for item in fake_sidecar.installations]
    assert listed[1].installation_context == "ari:cloud:confluence::site/abc"
    assert [call.url for call in fake_sidecar.proxy_calls] == [
        "/v1/installations?pageSize=2",
        "/v1/installations?pageSize=2&cursor=2",
    ]


def listing(*pages: httpx2.Response) -> ForgeContainers:
    answers = iter(pages)
    settings = ContainerSettings(
        "http://localhost:7072",
        f"ari:cloud:ecosystem::app/{INSTALLATION}",
        f"ari:cloud:ecosystem::environment/{INSTALLATION}/{INSTALLATION}",
    )
    return ForgeContainers(settings, transport=httpx2.MockTransport(lambda request: next(answers)))


async def test_a_listing_that_loops_or_fails_ends() -> None:
    page = {"installations": [{"id": INSTALLATION}], "cursor": "same"}
    looping = listing(httpx2.Response(200, json=page), httpx2.Response(200, json=page))
    assert len([item async for item in looping.installations()]) == 2

    for answer, message in [
        (httpx2.Response(500), "answered 500"),
        (httpx2.Response(200, content=b"<html>"), "unreadable"),
        (httpx2.Response(200, json={"installations": "x"}), "unreadable"),
    ]:
        with pytest.raises(ProductAPIError, match=message):
            [item async for item in listing(answer).installations(retries=None)]

    endless = listing(*(httpx2.Response(200, json={"installations": [], "cursor": str(n)}) for n in range(3)))
    with pytest.raises(ProductAPIError, match="did not end"):
        [item async for item in endless.installations(max_pages=3)]
    with pytest.raises(ValueError, match="page_size"):
        [item async for item in endless.installations(page_size=101)]


# -- the kit's sidecar ---------------------------------------------------------------------------------


def test_the_kit_blocks_what_bypasses_the_proxy_and_malformed_headers(fake_sidecar: FakeSidecar) -> None:
    call_id = fake_sidecar.invocation()
    answer = fake_sidecar.answer

    def status(path: str, header: str | None, method: str = "GET") -> int:
        headers = {} if header is None else {"forge-proxy-authorization": header}
        return answer(httpx2.Request(method, f"http://localhost:7072{path}", headers=headers)).status_code

    assert status("/forge/storage/kvs/v1/get", f"Forge id={call_id}") == 403
    assert status("/jira/rest/api/3/myself", None) == 401
    assert status("/jira/rest/api/3/myself", f"Forge id={call_id},id={call_id}") == 401
    assert status("/jira/rest/api/3/myself", f"Bearer {call_id}") == 401
    assert status("/jira/rest/api/3/myself", f"Forge as=root,id={call_id}") == 401
    assert status("/jira/rest/api/3/myself", f"Forge as=app,id={call_id},accountId=x") == 401
    assert status("/jira/rest/api/3/myself", "Forge id=unknown") == 403
    assert status("/jira/rest/api/3/myself", f"Forge as=user,installationId={INSTALLATION}") == 403
    uuid = fake_sidecar.forge.installation_uuid
    assert status("/jira/rest/api/3/myself", f"Forge as=user,installationId={uuid}") == 403
    assert status("/invocation/context", f"Forge as=app,id={call_id}") == 400
    assert status("/invocation/context", None) == 400
    assert status("/jira/rest/api/3/myself", "Forge as=app") == 401
    assert status("/proxy/api.example.com/x", "Forge id=unknown") == 403
    ui_without_user = fake_sidecar.invocation(account_id=None)
    assert status("/jira/rest/api/3/myself", f"Forge as=user,id={ui_without_user}") == 403
    refusals = [call.refusal for call in fake_sidecar.calls]
    assert (refusals[9], refusals[-1]) == ("malformed header", "the invocation has no user")


def test_the_kit_serves_on_loopback(fake_sidecar: FakeSidecar) -> None:
    fake_sidecar.delay = 0.01
    with fake_sidecar.serve() as url:
        assert fake_sidecar.settings().egress_proxy_url == url
        call_id = fake_sidecar.invocation()
        with httpx2.Client(base_url=url) as client:
            context = client.get("/invocation/context", headers={"forge-proxy-authorization": f"Forge id={call_id}"})
            me = client.get(
                "/jira/rest/api/3/myself", headers={"forge-proxy-authorization": f"Forge as=user,id={call_id}"}
            )
            posted = client.post(
                "/atlassian/graphql", json={}, headers={"forge-proxy-authorization": f"Forge id={call_id}"}
            )
    assert context.json()["app"]["id"] == fake_sidecar.app_ari
    assert me.json()["accountId"] == fake_sidecar.account_id
    assert posted.status_code == 200
    assert fake_sidecar.url == "http://localhost:7072"
