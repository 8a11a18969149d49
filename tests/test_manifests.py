"""Forge manifests are checked against Forge's own schema, and their routes against the example app's.

The schema is the one Atlassian publishes in the npm package `@forge/manifest` (13.x, "Definitions and
validations of the Forge manifest"), installed from tests/tools' lockfile (`tests/node_tools.py`: a
missing Node.js skips, and fails where REQUIRE_NODE or CI is set). Checked: `example_app/manifest.yml`,
complete, and every fenced YAML block with `modules:` in docs/*.md (a fragment is completed with an
`app` and the remotes it names, nothing else, so its modules are checked as written), and
`example_app/container-manifest.yml`, the container service (`python -m example_app.container`). The
schema does not check references, so this does: every `endpoint:` names an endpoint module, every endpoint
a remote or a service; and the key lengths Atlassian documents but the schema allows longer (services 19,
endpoints 23). The container manifest's routes are called on the container app as the sidecar calls them.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator
from starlette.routing import Route

from example_app.container import create_container_app
from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import ForgeLifecycleEvent
from fastapi_connect_auth.testing import ContainerAppDriver, FakeForge, FakeSidecar, FitShape, SidecarKind
from tests.node_tools import tools

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_app" / "manifest.yml"
CONTAINER = ROOT / "example_app" / "container-manifest.yml"
SERVICE_KEY, ENDPOINT_KEY = 19, 23
"""The longest keys Forge takes (its containers reference, its endpoint reference); the schema allows 25 and any."""
FENCE = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
APP_ID = "ari:cloud:ecosystem::app/6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"


def docs_manifests() -> Iterator[tuple[str, str]]:
    for page in sorted((ROOT / "docs").glob("*.md")):
        for number, block in enumerate(FENCE.findall(page.read_text()), 1):
            if re.search(r"^modules:", block, re.MULTILINE):
                yield f"{page.name}#{number}", block


DOCS = list(docs_manifests())


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    package = tools() / "@forge" / "manifest"
    assert json.loads((package / "package.json").read_text())["version"].startswith("13.")
    schema = json.loads((package / "out" / "schema" / "manifest-schema.json").read_text())
    return Draft7Validator(schema)


def problems(validator: Draft7Validator, manifest: dict[str, Any]) -> list[str]:
    """What Forge's schema and the references say is wrong with `manifest` (empty: nothing)."""
    found = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in validator.iter_errors(manifest)
    ]
    modules = manifest.get("modules", {})
    endpoints = {endpoint["key"]: endpoint for endpoint in modules.get("endpoint", [])}
    remotes = {remote["key"] for remote in manifest.get("remotes", [])}
    services = [service["key"] for service in manifest.get("services", [])]
    found += [
        f"service key {key!r} is not unique" for key in sorted({key for key in services if services.count(key) > 1})
    ]
    found += [f"service key {key!r} is longer than {SERVICE_KEY}" for key in services if len(key) > SERVICE_KEY]
    found += [f"endpoint key {key!r} is longer than {ENDPOINT_KEY}" for key in endpoints if len(key) > ENDPOINT_KEY]
    keys = [module["key"] for entries in modules.values() for module in entries]
    found += [f"module key {key!r} is not unique" for key in sorted({key for key in keys if keys.count(key) > 1})]
    for kind, entries in modules.items():
        for module in entries:
            named = module.get("endpoint") or (module.get("resolver") or {}).get("endpoint")
            if named is not None and kind != "endpoint" and named not in endpoints:
                found.append(f"{kind} {module['key']!r} names the endpoint {named!r}, which is not declared")
    for endpoint in modules.get("endpoint", []):
        if "remote" in endpoint and endpoint["remote"] not in remotes:
            found.append(f"endpoint {endpoint['key']!r} names the remote {endpoint['remote']!r}, which is not declared")
        if "service" in endpoint and endpoint["service"] not in services:
            found.append(
                f"endpoint {endpoint['key']!r} names the service {endpoint['service']!r}, which is not declared"
            )
    for trigger in modules.get("trigger", []):  # as @forge/manifest's own validator: a route, the system token only
        target = endpoints.get(trigger.get("endpoint", ""), {})
        if target and ("route" not in target or target.get("auth", {}).get("appUserToken", {}).get("enabled")):
            found.append(f"trigger {trigger['key']!r}: its endpoint needs a route and no user token")
    connect_remote = manifest.get("app", {}).get("connect", {}).get("remote")
    if connect_remote is not None and connect_remote not in remotes:
        found.append(f"app.connect.remote {connect_remote!r} is not declared")
    return found


def completed(fragment: dict[str, Any]) -> dict[str, Any]:
    """A docs fragment with what it leaves out: an `app`, and each remote its endpoints name."""
    manifest = {"app": {"id": APP_ID, "runtime": {"name": "nodejs22.x"}}, **fragment}
    named = {endpoint["remote"] for endpoint in fragment["modules"].get("endpoint", []) if "remote" in endpoint}
    declared = {remote["key"] for remote in manifest.get("remotes", [])}
    manifest["remotes"] = [
        *manifest.get("remotes", []),
        *({"key": key, "baseUrl": "https://app.example.com"} for key in sorted(named - declared)),
    ]
    return manifest


def example() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return manifest


def test_the_example_manifest_follows_forges_schema(validator: Draft7Validator) -> None:
    assert problems(validator, example()) == []


@pytest.mark.parametrize(("where", "block"), DOCS, ids=[where for where, _ in DOCS])
def test_every_manifest_in_the_docs_follows_forges_schema(validator: Draft7Validator, where: str, block: str) -> None:
    manifest = yaml.safe_load(block)
    assert problems(validator, manifest if "app" in manifest else completed(manifest)) == []


def test_the_docs_show_manifests() -> None:
    assert DOCS, "no manifest found in docs/*.md: the pattern no longer matches them"


def test_a_broken_manifest_fails(validator: Draft7Validator) -> None:
    breaks = {
        "a trigger without events": lambda m: m["modules"]["trigger"][0].pop("events"),
        "an unknown lifecycle event field": lambda m: m["modules"]["preUninstall"][0].update(events=["x"]),
        "an app id that is not an app ARI": lambda m: m["app"].update(id="6c9a4a8f"),
        "an unknown runtime": lambda m: m["app"]["runtime"].update(name="python3.13"),
        "an endpoint nobody declared": lambda m: m["modules"]["trigger"][0].update(endpoint="forge-event"),
        "a remote nobody declared": lambda m: m["modules"]["endpoint"][0].update(remote="elsewhere"),
        "a module key twice": lambda m: m["modules"]["endpoint"].append(copy.deepcopy(m["modules"]["endpoint"][0])),
    }
    for what, breaking in breaks.items():
        manifest = example()
        breaking(manifest)
        assert problems(validator, manifest), f"{what} passed"


# -- the example app's manifest and the example app ----------------------------------------------------------------


def test_the_manifest_is_the_example_apps(tmp_path: Path) -> None:
    manifest = example()
    assert manifest["app"]["connect"]["key"] == Settings().app_key
    endpoints = {endpoint["key"]: endpoint for endpoint in manifest["modules"]["endpoint"]}
    triggers = {event: trigger["endpoint"] for trigger in manifest["modules"]["trigger"] for event in trigger["events"]}
    assert triggers["avi:jira:created:issue"] == "forge-events"  # the endpoint names the real-traffic issue pins
    assert triggers["avi:forge:installed:app"] == "forge-lifecycle"
    assert endpoints["forge-events"]["route"]["path"] == "/forge/events"
    # One endpoint has one route: every lifecycle event goes to the one route that takes them all.
    assert triggers["avi:forge:upgraded:app"] == "forge-lifecycle"
    assert [module["endpoint"] for module in manifest["modules"]["preUninstall"]] == ["forge-lifecycle"]
    assert endpoints["forge-lifecycle"]["route"]["path"] == "/forge/lifecycle"
    assert all(
        endpoint["auth"]["appSystemToken"]["enabled"] for key, endpoint in endpoints.items() if key != "forge-ui"
    )
    assert manifest["remotes"][0]["auth"]["appSystemToken"]["enabled"] is True


def example_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """`(method, path)` of every route of the example app with Forge on: its OpenAPI paths, and the pages."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", forge_app_id=APP_ID)
    app = create_app(settings)
    documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    listed = {
        (method, route.path) for route in app.routes if isinstance(route, Route) for method in route.methods or ()
    }
    return documented | listed


def test_every_route_the_manifest_names_is_one_of_the_example_apps(tmp_path: Path) -> None:
    routes = example_routes(tmp_path)
    manifest = example()
    endpoints = {endpoint["key"]: endpoint["route"]["path"] for endpoint in manifest["modules"]["endpoint"]}
    methods = {"forge-ui": "GET"}  # the issue panel reads; events, triggers and lifecycle events are POSTs
    for key, path in endpoints.items():
        assert (methods.get(key, "POST"), path) in routes, f"endpoint {key}: no route {path}"
    # The per-event lifecycle routes stay for manifests with an endpoint per event; this one has one for all.
    per_event = {f"/forge/lifecycle/{event}" for event in ("installed", "upgraded", "pre-uninstall")}
    forge_routes = {path for _, path in routes if path.startswith("/forge/")}
    assert per_event <= forge_routes
    assert forge_routes - per_event <= set(endpoints.values()), "a Forge route of the app no endpoint reaches"
    (lifecycle,) = manifest["connectModules"]["jira:lifecycle"]
    for event in ("installed", "uninstalled", "enabled", "disabled"):
        assert ("POST", lifecycle[event]) in routes
    for webhook in manifest["connectModules"]["jira:webhooks"]:
        assert ("POST", webhook["url"]) in routes
    for page in manifest["connectModules"]["jira:generalPages"]:
        assert ("GET", page["url"]) in routes


def test_each_endpoint_the_manifest_routes_events_to_is_accepted_there(tmp_path: Path) -> None:
    """A FIT names its endpoint (`app.module.key`): each route takes the FITs of the endpoint that reaches it.

    Routes that restrict their module keys (`ForgeRequest(module_keys=...)`) must list the endpoint the
    manifest sends there, or Forge's calls are refused and retried in vain.
    """
    forge = FakeForge()
    settings = Settings(
        base_url="https://connect-app.example.test",
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        secret_encryption_key=Fernet.generate_key().decode(),
        forge_app_id=forge.app_id,
    )
    manifest = example()
    endpoints = {endpoint["key"]: endpoint["route"]["path"] for endpoint in manifest["modules"]["endpoint"]}
    names: dict[str, ForgeLifecycleEvent] = {
        "avi:forge:installed:app": "installed",
        "avi:forge:upgraded:app": "upgraded",
    }
    # Every lifecycle event the manifest sends, with its endpoint, in Forge's order: installed, upgraded, preUninstall.
    lifecycle: list[tuple[str, ForgeLifecycleEvent]] = [
        (trigger["endpoint"], names[event])
        for trigger in manifest["modules"]["trigger"]
        for event in trigger["events"]
        if event.startswith("avi:forge:")
    ]
    lifecycle += [(module["endpoint"], "pre-uninstall") for module in manifest["modules"]["preUninstall"]]
    assert sorted(event for _, event in lifecycle) == ["installed", "pre-uninstall", "upgraded"]
    (events,) = {trigger["endpoint"] for trigger in manifest["modules"]["trigger"]} - {key for key, _ in lifecycle}

    def fit(shape: FitShape, endpoint: str) -> str:
        return forge.mint_fit(shape, app={"module": {"type": "core:endpoint", "key": endpoint}})

    app = create_app(settings, forge_key_provider=forge.key_provider())
    with TestClient(app, base_url=settings.base_url) as client:
        driver = forge.drive(client)
        for endpoint, event in lifecycle:
            answer = driver.lifecycle(endpoints[endpoint], event, fit=fit("lifecycle", endpoint))
            assert answer.is_success, (endpoint, event, answer.status_code, answer.text)
        state = driver.ui_call("/forge/whoami").json()["installationState"]
        assert state == "uninstalled", "the preUninstall event was not recorded as one"
        answer = driver.event(endpoints[events], {"eventType": "avi:jira:created:issue"}, fit=fit("event", events))
        assert answer.is_success, (events, answer.status_code, answer.text)


# -- the container manifest and the container app -------------------------------------------------------------------

CALLED_AS: dict[str, tuple[SidecarKind, str]] = {"trigger": ("event", "POST"), "scheduledTrigger": ("trigger", "POST")}
"""How the sidecar calls a module's endpoint: `(invocation kind, method)`; any other module is a UI call (GET)."""


def container() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(CONTAINER.read_text())
    return manifest


def container_route_problems(manifest: dict[str, Any], database: Path) -> list[str]:
    """What the container app says about `manifest`'s routes (empty: nothing).

    Each health path answers a bare GET (Forge's check sends no header) with 200-399; each endpoint's route is
    one of the app's; each module's endpoint takes the call the sidecar sends for it (`ContainerAppDriver`, with
    the module's key and type in the context, an event per event the trigger names); and each route of the app
    under /container/ is called by some module.
    """
    sidecar = FakeSidecar()
    app = create_container_app(Settings(database_url=f"sqlite:///{database}"), containers=sidecar.containers())
    routes = {
        (method, route.path) for route in app.routes if isinstance(route, Route) for method in route.methods or ()
    }
    paths = {path for _, path in routes}
    called: set[tuple[str, str]] = set()
    modules = manifest["modules"]
    endpoints = {
        endpoint["key"]: endpoint["route"]["path"] for endpoint in modules["endpoint"] if "service" in endpoint
    }
    found = [f"endpoint {key!r}: the app has no route {path}" for key, path in endpoints.items() if path not in paths]
    with TestClient(app) as client:
        drive = ContainerAppDriver(sidecar, client)
        for service in manifest["services"]:
            for box in service["containers"]:
                health = client.get(box["health"]["route"]["path"])
                if not 200 <= health.status_code <= 399:
                    found.append(f"container {box['key']!r}: the health check answered {health.status_code}")
        for kind, entries in modules.items():
            for module in entries:
                path = endpoints.get(module.get("endpoint") or (module.get("resolver") or {}).get("endpoint", ""))
                if kind == "endpoint" or path is None:
                    continue
                invocation, method = CALLED_AS.get(kind, ("ui", "GET"))
                called.add((method, path))
                context = sidecar.context_document(invocation, module_key=module["key"])
                context["app"]["module"]["type"] = kind if ":" in kind else f"core:{kind}"
                for event in module.get("events", [None]):
                    answer = drive.invoke(
                        invocation,
                        path,
                        method=method,
                        json={"eventType": event, "issue": {"key": "DEMO-1"}} if event else None,
                        invocation_id=sidecar.invocation(context=context),
                    )
                    if not answer.is_success:
                        found.append(f"{kind} {module['key']!r}: {method} {path} answered {answer.status_code}")
    own = {(method, path) for method, path in routes if path.startswith("/container/")}
    return found + [f"{method} {path} of the app: no module reaches it" for method, path in sorted(own - called)]


def test_the_container_manifest_follows_forges_schema(validator: Draft7Validator) -> None:
    manifest = container()
    assert problems(validator, manifest) == []
    assert "services" in validator.schema["properties"], "the locked @forge/manifest no longer knows `services`"
    assert validator.schema["additionalProperties"] is False  # an unknown top-level key fails


def test_the_container_manifest_is_the_container_apps(tmp_path: Path) -> None:
    manifest = container()
    (service,) = manifest["services"]
    (box,) = service["containers"]
    assert box["health"]["route"]["path"] == "/healthz"
    assert box["tag"] != "latest"
    endpoints = {endpoint["key"]: endpoint for endpoint in manifest["modules"]["endpoint"]}
    assert {endpoint["service"] for endpoint in endpoints.values()} == {service["key"]}
    assert {endpoint["route"]["path"] for endpoint in endpoints.values()} == {
        "/container/events",
        "/container/whoami",
        "/container/myself",
    }
    (trigger,) = manifest["modules"]["trigger"]
    assert "avi:jira:created:issue" in trigger["events"]
    assert endpoints[trigger["endpoint"]]["route"]["path"] == "/container/events"
    # /container/myself reads Jira as the user; issue events need read:jira-work; nothing leaves but through Jira.
    assert set(manifest["permissions"]["scopes"]) == {"read:jira-work", "read:jira-user"}
    assert "external" not in manifest["permissions"]
    assert container_route_problems(manifest, tmp_path / "container.db") == []


def test_a_broken_container_manifest_fails(validator: Draft7Validator, tmp_path: Path) -> None:
    def endpoint(manifest: dict[str, Any], key: str) -> dict[str, Any]:
        found: dict[str, Any] = next(e for e in manifest["modules"]["endpoint"] if e["key"] == key)
        return found

    breaks = {
        "an endpoint naming an unknown service": lambda m: endpoint(m, "container-events").update(service="elsewhere"),
        "a trigger naming an unknown endpoint": lambda m: m["modules"]["trigger"][0].update(endpoint="container-event"),
        "a service key over 19 characters": lambda m: m["services"][0].update(key="fastapi-example-svc1"),
        "an endpoint key over 23 characters": lambda m: endpoint(m, "container-whoami").update(
            key="container-whoami-panel-1"
        ),
        "a scaling profile the schema lacks": lambda m: m["services"][0]["scaling"].update(profile="default"),
        "an unknown top-level key": lambda m: m.update(service=[]),
        "a trigger's endpoint with the user token": lambda m: endpoint(m, "container-events").update(
            auth={"appUserToken": {"enabled": True}}
        ),
        "a service twice": lambda m: m["services"].append(copy.deepcopy(m["services"][0])),
    }
    for what, breaking in breaks.items():
        manifest = container()
        breaking(manifest)
        assert problems(validator, manifest), f"{what} passed"
    routes = {
        "a route the app lacks": lambda m: endpoint(m, "container-myself")["route"].update(path="/container/me"),
        "a health check the app lacks": lambda m: m["services"][0]["containers"][0]["health"]["route"].update(
            path="/health"
        ),
        "events sent to a GET route": lambda m: m["modules"]["trigger"][0].update(endpoint="container-whoami"),
        "a route of the app no module reaches": lambda m: m["modules"].pop("jira:projectPage"),
    }
    for number, (what, breaking) in enumerate(routes.items()):
        manifest = container()
        breaking(manifest)
        assert problems(validator, manifest) == [], f"{what}: the schema alone should not see it"
        assert container_route_problems(manifest, tmp_path / f"{number}.db"), f"{what} passed"
