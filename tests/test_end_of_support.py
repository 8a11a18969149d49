"""Connect's end of support: the reserved property read once per installation, the batch, and `migrate status`.

Integration tests: real FITs verified by `ForgeAuth`, the kit's fake product API
(in-process, or on loopback for a slow answer), real stores (SQLite and
PostgreSQL through the `database` fixture; two store objects are two replicas).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet

from fastapi_connect_auth import ForgeAuth, ForgeInvocation, ForgeStoredToken
from fastapi_connect_auth._cli import main
from fastapi_connect_auth.stores import ConnectLinker, MemoryStore, SecretCipher, readiness_report
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from fastapi_connect_auth.testing import FakeForge, install_payload
from tests.postgres import Database

pytestmark = pytest.mark.anyio

PROPERTY = "connect_client_key_019cdff3-8bfb-71fe-9628-875b700aebb8"
CONNECT_KEY = "my-connect-app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def invocation(forge: FakeForge, shape: Any = "event", *, system_token: str | None = "") -> ForgeInvocation:
    auth = forge.forge_auth(api_hosts=["127.0.0.1"])
    token = forge.system_token() if system_token == "" else system_token
    return await auth.verify_invocation(forge.mint_fit(shape), system_token=token)


def reads(forge: FakeForge) -> list[int]:
    return [call.status for call in forge.api_calls if PROPERTY in call.url]


async def stored_tenant(store: Any, client_key: str, **fields: Any) -> None:
    """An install as Atlassian signs it (only those link by their installationId or cloudId)."""
    await store.save_install(install_payload(client_key, "s" * 40, **fields), signed_at=100, atlassian_signed=True)


SHAPES = {
    "a string": ("tenant-1", "linked"),
    "an object": ({"clientKey": "tenant-1"}, "linked"),
    "a number": (42, "invalid"),
    "a list": (["tenant-1"], "invalid"),
    "an object without clientKey": ({"key": "tenant-1"}, "invalid"),
    "an empty string": ("", "invalid"),
    "a control character": ("tenant\x00", "invalid"),
    "null": (None, "invalid"),
    "a tenant never stored": ("tenant-2", "no-tenant"),
}


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_propertys_shapes(shape: str) -> None:
    value, outcome = SHAPES[shape]
    forge, store = FakeForge(), MemoryStore()
    await stored_tenant(store, "tenant-1")
    forge.serve_connect_client_key(value)
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    attempt = await linker.link_on_contact(await invocation(forge))
    assert attempt is not None
    assert (attempt.outcome, attempt.read) == (outcome, True)
    linked = await store.installation_tenant(forge.installation_id)
    assert (linked.client_key if linked else None) == ("tenant-1" if outcome == "linked" else None)


FAILURES = {"404": (404, "not-found", 86_400), "401": (401, "refused", 3600), "403": (403, "refused", 3600)}
FAILURES |= {"500": (500, "unreachable", 300), "429": (429, "rate-limited", 120)}


@pytest.mark.parametrize("failure", FAILURES)
async def test_failures_are_remembered_with_a_back_off(failure: str) -> None:
    status, outcome, backoff = FAILURES[failure]
    forge, store = FakeForge(), MemoryStore()
    forge.serve_connect_client_key(status=status, retry_after=120 if status == 429 else None)
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    before = time.time()
    attempt = await linker.link_on_contact(await invocation(forge))
    assert attempt is not None
    assert attempt.outcome == outcome
    kept = await store.connect_link(forge.installation_id)
    assert kept is not None
    assert (kept.last_outcome, kept.verified) == (outcome, False)
    assert before + backoff <= kept.next_attempt_at <= time.time() + backoff
    again = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)  # another replica
    assert await linker.link_on_contact(await invocation(forge)) is None  # this process knows to wait
    skipped = await again.link_on_contact(await invocation(forge))
    assert skipped is not None
    assert (skipped.outcome, skipped.read) == ("pending", False)
    assert reads(forge) == [status]


async def test_a_slow_product_is_a_timeout_that_never_fails_the_invocation() -> None:
    forge, store = FakeForge(), MemoryStore()
    forge.serve_connect_client_key("tenant-1", delay=1.0)
    with forge.serve_api():
        linker = ConnectLinker(store, connect_key=CONNECT_KEY, timeout=0.2)
        attempt = await linker.link_on_contact(await invocation(forge))
    assert attempt is not None
    assert attempt.outcome == "unreachable"


async def test_ui_calls_and_calls_without_a_system_token_are_never_used() -> None:
    forge, store = FakeForge(), MemoryStore()
    forge.serve_connect_client_key("tenant-1")
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    for shape in ("ui", "request-remote"):
        assert await linker.link_on_contact(await invocation(forge, shape)) is None
    assert await linker.link_on_contact(await invocation(forge, system_token=None)) is None
    assert reads(forge) == []


async def test_a_hook_that_fails_never_fails_the_invocation(caplog: pytest.LogCaptureFixture) -> None:
    forge = FakeForge()

    async def broken(invocation: ForgeInvocation) -> None:
        raise RuntimeError("the app's bug")

    auth: ForgeAuth = forge.forge_auth(on_invocation=broken)
    verified = await auth.verify_invocation(forge.mint_fit("event"))
    assert verified.installation_id == forge.installation_id
    assert "on_invocation failed" in caplog.text
    assert "RuntimeError" in caplog.text


async def test_one_read_per_installation_across_two_replicas(database: Database) -> None:
    forge = FakeForge()
    forge.serve_connect_client_key("tenant-1")
    key = Fernet.generate_key().decode()
    replicas = [SQLAlchemyStore(database.url, cipher=SecretCipher([key])) for _ in range(2)]
    try:
        await replicas[0].create_tables()
        await stored_tenant(replicas[0], "tenant-1")
        linkers = [ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport) for store in replicas]
        calls = [await invocation(forge) for _ in range(10)]
        attempts = await asyncio.gather(*(linkers[n % 2].link_on_contact(call) for n, call in enumerate(calls)))
        assert reads(forge) == [200]
        assert sum(attempt.read for attempt in attempts if attempt is not None) == 1
        for store in replicas:
            linked = await store.installation_tenant(forge.installation_id)
            assert linked is not None
            assert linked.client_key == "tenant-1"
    finally:
        for store in replicas:
            await store.close()


async def test_the_batch_with_live_and_expired_tokens() -> None:
    store = MemoryStore()
    await stored_tenant(store, "tenant-a")
    await stored_tenant(store, "tenant-c", installationId="placeholder")
    live, expired, refused, linked = FakeForge(), FakeForge(), FakeForge(), FakeForge()
    live.serve_connect_client_key("tenant-a")
    refused.serve_connect_client_key(status=403)
    await stored_tenant(store, "tenant-c", installationId=linked.installation_id)
    now = time.time()
    for forge in (live, expired, refused, linked):
        await store.record_forge_installation(await invocation(forge))
    for forge in (live, refused):
        token = ForgeStoredToken(forge.system_token(), forge.api_base_url, now + 3600, now)
        await store.put(forge.installation_id, None, token)
    await store.put(
        expired.installation_id, None, ForgeStoredToken(expired.system_token(), expired.api_base_url, now + 1, now)
    )  # within the store's leeway: expired for use

    def route(request: Any) -> Any:
        forge = next(f for f in (live, expired, refused, linked) if f.cloud_id in request.url.path)
        return forge.answer_api_request(request)

    import httpx2

    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=httpx2.MockTransport(route))
    run = await linker.link_stored()
    outcomes = {attempt.installation_id: attempt.outcome for attempt in run.attempts}
    assert outcomes == {
        live.installation_id: "linked",
        expired.installation_id: "no-token",
        refused.installation_id: "refused",
        linked.installation_id: "linked",
    }
    assert sum(attempt.read for attempt in run.attempts) == 2  # the linked one is not read again
    assert run.as_json()["unreached"] == sorted(
        [
            {"installation_id": expired.installation_id, "outcome": "no-token"},
            {"installation_id": refused.installation_id, "outcome": "refused"},
        ],
        key=lambda item: item["installation_id"],
    )
    tokens = [f.system_token() for f in (live, expired, refused, linked)]
    assert not any(token in json.dumps(run.as_json()) for token in tokens)


async def seed(store: Any) -> dict[str, FakeForge]:
    """Tenants: verified by install, verified by property, guessed by cloud id, unlinked; installations for each."""
    forges = {name: FakeForge() for name in ("install", "property", "guess", "alone")}
    await stored_tenant(store, "by-install", installationId=forges["install"].installation_id)
    await stored_tenant(store, "by-property", cloudId="renamed-site")
    await stored_tenant(store, "by-guess", cloudId=forges["guess"].cloud_id)
    await stored_tenant(store, "unlinked", cloudId="nowhere")
    await stored_tenant(store, "gone")
    await store.uninstall("gone", signed_at=200)
    for forge in forges.values():
        await store.record_forge_installation(await invocation(forge))
    forges["property"].serve_connect_client_key("by-property")
    forges["alone"].serve_connect_client_key(status=404)
    for name in ("property", "alone"):
        linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forges[name].api_transport)
        await linker.link_on_contact(await invocation(forges[name]))
    return forges


async def test_the_readiness_report(database: Database) -> None:
    store = SQLAlchemyStore(database.url, cipher=SecretCipher([Fernet.generate_key().decode()]))
    try:
        await store.create_tables()
        forges = await seed(store)
        report = await readiness_report(store)
    finally:
        await store.close()
    counts = {name: value for name, value in report.as_json().items() if isinstance(value, int)}
    assert counts == {
        "connect_tenants": 4,
        "linked": 3,
        "verified": 2,
        "guessed": 1,
        "unlinked": 1,
        "forge_installations": 4,
        "forge_without_connect": 1,
    }
    assert [tenant.client_key for tenant in report.unlinked_tenants] == ["unlinked"]
    unreached = {i.installation_id: (i.last_outcome, i.guessed_client_key) for i in report.unreached}
    assert unreached == {
        forges["guess"].installation_id: (None, "by-guess"),
        forges["alone"].installation_id: ("not-found", None),
    }


def test_migrate_status_from_the_command_line(
    database: Database, capsys: pytest.CaptureFixture[str], anyio_backend: str
) -> None:
    async def prepare() -> None:
        store = SQLAlchemyStore(database.url, cipher=SecretCipher([Fernet.generate_key().decode()]))
        try:
            await store.create_tables()
            await seed(store)
        finally:
            await store.close()

    asyncio.run(prepare())
    assert main(["migrate", "status", "--database-url", database.url, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {name: answer[name] for name in ("connect_tenants", "linked", "unlinked")} == {
        "connect_tenants": 4,
        "linked": 3,
        "unlinked": 1,
    }
    assert (answer["forge_installations"], answer["forge_without_connect"]) == (4, 1)
    assert main(["migrate", "status", "--database-url", database.url]) == 0
    readable = capsys.readouterr().out
    assert readable.rstrip().endswith("not ready: see the lists above.")
    assert "unlinked tenants:" in readable
    assert "- unlinked https://contract.atlassian.net (jira)" in readable
    assert "s" * 40 not in readable


def test_migrate_status_reads_no_secret(tmp_path: Any, capsys: pytest.CaptureFixture[str], anyio_backend: str) -> None:
    """The report's store has no key at all: anything that would decrypt a secret fails, and the report works."""
    from fastapi_connect_auth._cli_migrate import _no_key

    url = f"sqlite:///{tmp_path}/app.db"

    async def prepare() -> None:
        store = SQLAlchemyStore(url, cipher=SecretCipher([Fernet.generate_key().decode()]))
        try:
            await store.create_tables()
        finally:
            await store.close()
        keyless = SQLAlchemyStore(url, cipher=_no_key)
        try:
            with pytest.raises(RuntimeError, match="reads no secret"):
                await keyless.save_install(install_payload("tenant-1", "s" * 40), signed_at=1)
        finally:
            await keyless.close()

    asyncio.run(prepare())
    assert main(["migrate", "status", "--database-url", url]) == 0
    assert capsys.readouterr().out.rstrip().endswith("ready: every tenant is linked for certain.")


@pytest.mark.parametrize("url", ["nonsense://x", "sqlite:///{tmp}/empty.db", "postgresql://nobody@/x?host={tmp}"])
def test_migrate_status_on_a_database_it_cannot_open(
    url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], anyio_backend: str
) -> None:
    assert main(["migrate", "status", "--database-url", url.format(tmp=tmp_path), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("Error: cannot read the store's database (")
    assert out.err.count("\n") == 1


def test_migrate_link_from_the_command_line(
    database: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """The batch from the command line: stored tokens decrypted with the keys of `--keys-env`, never printed."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("STORE_KEYS", f"{key},{Fernet.generate_key().decode()}")
    forge, tokenless = FakeForge(), FakeForge()
    forge.serve_connect_client_key("tenant-1")
    with forge.serve_api():
        token = forge.system_token()

        async def prepare() -> None:
            store = SQLAlchemyStore(database.url, cipher=SecretCipher([key]))
            try:
                await store.create_tables()
                await stored_tenant(store, "tenant-1")
                await store.record_forge_installation(await invocation(forge))
                await store.put(
                    forge.installation_id, None, ForgeStoredToken(token, forge.api_base_url, time.time() + 3600, 1)
                )
                await store.record_forge_installation(await invocation(tokenless))
            finally:
                await store.close()

        asyncio.run(prepare())
        argv = ["migrate", "link", "--database-url", database.url, "--connect-key", CONNECT_KEY]
        assert main([*argv, "--keys-env", "STORE_KEYS", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "installations": 2,
            "linked": 1,
            "read": 1,
            "unreached": [{"installation_id": tokenless.installation_id, "outcome": "no-token"}],
        }
        assert main([*argv, "--keys-env", "STORE_KEYS"]) == 0  # linked already: nothing read again
        assert capsys.readouterr().out.splitlines() == [
            "installations: 2, linked: 1, not reached: 1",
            f"  - {tokenless.installation_id}: no-token",
        ]
    assert reads(forge) == [200]
    assert main([*argv, "--keys-env", "UNSET_KEYS_VARIABLE"]) == 2
    assert "UNSET_KEYS_VARIABLE is not set" in capsys.readouterr().err
    assert main([*argv[:-1], "not a key!", "--keys-env", "STORE_KEYS"]) == 2
    assert main([*argv, "--keys-env", "1nvalid-name"]) == 2
    outputs = capsys.readouterr()
    assert token not in outputs.out + outputs.err


async def test_confluence_reads_under_wiki_and_bitbucket_has_no_property() -> None:
    store = MemoryStore()
    await stored_tenant(store, "wiki-tenant", productType="confluence")
    confluence, bitbucket = FakeForge(product="confluence"), FakeForge(product="bitbucket")
    confluence.serve_connect_client_key("wiki-tenant")
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=confluence.api_transport)
    attempt = await linker.link_on_contact(await invocation(confluence))
    assert attempt is not None
    assert attempt.outcome == "linked"
    assert [call.url.split("/rest/")[0] for call in confluence.api_calls] == [
        f"/ex/confluence/{confluence.cloud_id}/wiki"
    ]
    skipped = await linker.link_on_contact(await invocation(bitbucket))
    assert skipped is not None
    assert (skipped.outcome, skipped.read) == ("unsupported", False)
    assert await linker.link_on_contact(await invocation(bitbucket)) is None  # not looked at again


async def test_a_body_that_is_not_json_is_invalid() -> None:
    import httpx2

    forge, store = FakeForge(), MemoryStore()
    path = "/rest/atlassian-connect/1/addons/{key}/properties/{property}"
    forge.api.add_route("GET", path, lambda call: httpx2.Response(200, content=b"{not json"))
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    attempt = await linker.link_on_contact(await invocation(forge))
    assert attempt is not None
    assert attempt.outcome == "invalid"


async def test_a_store_that_keeps_no_links_still_answers_and_the_invocation_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fastapi_connect_auth.stores import BaseStore

    class NoLinks(MemoryStore):
        """A store written before links: the base's defaults."""

        _get_link = BaseStore._get_link
        _claim_link = BaseStore._claim_link
        _put_link = BaseStore._put_link
        _list_links = BaseStore._list_links
        _list_tenants = BaseStore._list_tenants
        _list_installations = BaseStore._list_installations

    forge, store = FakeForge(), NoLinks()
    forge.serve_connect_client_key("tenant-1")
    await stored_tenant(store, "tenant-1", cloudId=forge.cloud_id)
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    auth = forge.forge_auth(on_invocation=linker)
    verified = await auth.verify_invocation(forge.mint_fit("event"), system_token=forge.system_token())
    assert "on_invocation failed" in caplog.text
    assert "NotImplementedError" in caplog.text
    guessed = await store.connect_tenant(verified)
    assert guessed is not None
    assert guessed.client_key == "tenant-1"  # the cloud-id fallback, as before
    for listing in (store.connect_links, store.list_tenants, store.list_forge_installations):
        with pytest.raises(NotImplementedError):
            await listing()


def test_the_linkers_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="shorter than the lease"):
        ConnectLinker(MemoryStore(), connect_key=CONNECT_KEY, timeout=60, lease=60)
    for key in ("", "has space", "../x", "a" * 81):
        with pytest.raises(ValueError, match="Connect key"):
            ConnectLinker(MemoryStore(), connect_key=key)


async def test_the_fake_answers_only_for_its_connect_key_once_set() -> None:
    forge, store = FakeForge(), MemoryStore()
    await stored_tenant(store, "tenant-1")
    forge.serve_connect_client_key("tenant-1")
    forge.connect_key = "the-apps-real-key"
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    attempt = await linker.link_on_contact(await invocation(forge))
    assert attempt is not None
    assert attempt.outcome == "not-found"


async def test_hostile_ids_and_times_never_reach_the_store() -> None:
    from fastapi_connect_auth import AuthError
    from fastapi_connect_auth.stores import ConnectLink

    store = MemoryStore()
    for hostile in ("", "x" * 256, "bad\x00id", "\ud800"):
        assert await store.connect_link(hostile) is None
        assert await store.installation_tenant(hostile) is None
        with pytest.raises(AuthError) as refused:
            await store.claim_connect_link(hostile, lease=60)
        assert refused.value.status_code == 400
    for link in (
        ConnectLink("ari:cloud:ecosystem::installation/1", next_attempt_at=float("inf")),
        ConnectLink("ari:cloud:ecosystem::installation/1", client_key="bad\nkey", source="property"),
    ):
        with pytest.raises(AuthError):
            await store.record_connect_link(link)
    assert await store.connect_links() == []


async def test_a_property_linked_tenant_that_uninstalled_is_no_longer_answered() -> None:
    forge, store = FakeForge(), MemoryStore()
    await stored_tenant(store, "tenant-1")
    forge.serve_connect_client_key("tenant-1")
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, transport=forge.api_transport)
    call = await invocation(forge)
    await linker.link_on_contact(call)
    assert await store.installation_tenant(forge.installation_id) is not None
    await store.uninstall("tenant-1", signed_at=200)
    assert await store.installation_tenant(forge.installation_id) is None
    assert await store.connect_tenant(call) is None


async def test_the_fakes_property_is_the_apps_only() -> None:
    import httpx2

    forge = FakeForge()
    forge.serve_connect_client_key("tenant-1")
    url = f"{forge.api_base_url}/rest/atlassian-connect/1/addons/any-key/properties/{PROPERTY}"
    as_user = forge.answer_api_request(
        httpx2.Request("GET", url, headers={"Authorization": f"Bearer {forge.user_token()}"})
    )
    assert as_user.status_code == 403
    other = url.replace(PROPERTY, "another-property")
    as_app = forge.answer_api_request(
        httpx2.Request("GET", other, headers={"Authorization": f"Bearer {forge.system_token()}"})
    )
    assert as_app.status_code == 404


def test_migrate_link_with_tokens_kept_in_redis(
    redis_url: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend: str,
) -> None:
    """The example app with REDIS_URL keeps Forge tokens in Redis: `--redis-url` reads them there."""
    from fastapi_connect_auth.stores.redis import RedisStore

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRET_ENCRYPTION_KEY", key)
    url, prefix = f"sqlite:///{tmp_path}/app.db", "example"
    forge = FakeForge()
    forge.serve_connect_client_key("tenant-1")
    with forge.serve_api():

        async def prepare() -> None:
            store = SQLAlchemyStore(url, cipher=SecretCipher([key]))
            tokens = RedisStore(redis_url, cipher=SecretCipher([key]), prefix=prefix)
            try:
                await store.create_tables()
                await stored_tenant(store, "tenant-1")
                await store.record_forge_installation(await invocation(forge))
                stored = ForgeStoredToken(forge.system_token(), forge.api_base_url, time.time() + 3600, 1)
                await tokens.put(forge.installation_id, None, stored)
            finally:
                await store.close()
                await tokens.close()

        asyncio.run(prepare())
        argv = ["migrate", "link", "--database-url", url, "--connect-key", CONNECT_KEY, "--json"]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["unreached"] == [
            {"installation_id": forge.installation_id, "outcome": "no-token"}
        ]
        assert main([*argv, "--redis-url", redis_url, "--redis-prefix", prefix]) == 0
        assert json.loads(capsys.readouterr().out)["linked"] == 1
    assert reads(forge) == [200]
