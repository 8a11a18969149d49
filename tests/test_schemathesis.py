"""Schemathesis against the example app's own `/openapi.json`, in-process, on a temp SQLite file.

Two runs over every operation: as an anonymous caller (every protected route
must refuse with a 4xx, never a 5xx), and as the installed tenant, each
generated case signed like Jira would sign it, so that webhook bodies are
stored and the inbox's `/api/events` answer is checked against its schema.
The checks are `not_a_server_error`, `status_code_conformance` and
`response_schema_conformance`: the errors are documented (each Connect dependency
adds its statuses and the `AuthErrorResponse` model), so 401s, 400s, 413s and
422s are checked against the schema like the successes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth.testing import FakeProduct

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://connect-app.example.test"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
"""Every answer, errors included, must be a documented status with a body matching its documented schema."""
RS256_ROUTES = {"/installed", "/uninstalled"}
CONTEXT_ROUTES = {"/api/events"}

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def product(fake_product_signing_key: rsa.RSAPrivateKey) -> FakeProduct:
    return FakeProduct(private_key=fake_product_signing_key)


@pytest.fixture(scope="module")
def settings_for_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    database: Path = tmp_path_factory.mktemp("schemathesis") / "app.db"
    key = Fernet.generate_key().decode()
    return Settings(base_url=APP_URL, database_url=f"sqlite:///{database}", secret_encryption_key=key)


@pytest.fixture(scope="module")
def api_schema(product: FakeProduct, settings_for_fuzz: Settings) -> Iterator[Any]:
    """The schema of an app whose tenant is installed; Schemathesis runs the app's lifespan itself."""
    with TestClient(create_app(settings_for_fuzz, key_provider=product.key_provider()), base_url=APP_URL) as client:
        assert product.drive(client).install().status_code == 204
    app = create_app(
        replace(settings_for_fuzz, product_api_timeout=1.0),
        key_provider=product.key_provider(),
        product_transport=product.api_transport,
        user_tokens=product.user_tokens(),  # /api/events acts as the user: tokens from the fake, in-process
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()


def signed_headers(product: FakeProduct, method: str, path: str, query: dict[str, Any] | None) -> dict[str, str]:
    """`Authorization: JWT` for this case, as Jira signs a call to `path`; the QSH written out by hand."""
    assert not query, "the example app declares no query parameters"
    qsh = hashlib.sha256(f"{method.upper()}&{path}&".encode()).hexdigest()
    if path in CONTEXT_ROUTES:
        token = product.context_token()
    elif path in RS256_ROUTES:
        token = product.signed_token(method, path, app_base_url=APP_URL, qsh=qsh)
    else:
        token = product.shared_secret_token(method, path, qsh=qsh)
    return {"Authorization": f"JWT {token}"}


def declared_operations() -> list[tuple[str, str]]:
    """`(METHOD, path)` of every operation in the app's OpenAPI document (building the app opens nothing)."""
    document = create_app(Settings(base_url=APP_URL)).openapi()
    return [(method.upper(), path) for path, methods in document["paths"].items() for method in methods]


OPERATIONS = declared_operations()
STATUSES: dict[str, Counter[int]] = {}
"""The statuses answered per run and operation, printed at the end of the module (`pytest -s`) for the docs."""


def fuzz_operation(api_schema: Any, method: str, path: str, headers_for: Any, *, run: str) -> None:
    """Send positive and negative cases generated for one operation; check each answer."""
    operation = api_schema[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    label = f"{run} {method} {path}"
    STATUSES[label] = Counter()

    @FUZZ
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(headers=headers_for(case))
        STATUSES[label][response.status_code] += 1
        case.validate_response(response, checks=CHECKS)
        assert response.status_code < 500
        if run == "anonymous" and path != "/atlassian-connect.json":
            assert 400 <= response.status_code < 500, response.text

    check()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_anonymous_calls_never_fail_and_match_the_schema(api_schema: Any, method: str, path: str) -> None:
    fuzz_operation(api_schema, method, path, lambda case: None, run="anonymous")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_tenant_calls_never_fail_and_match_the_schema(
    api_schema: Any, product: FakeProduct, method: str, path: str
) -> None:
    def sign(case: Any) -> dict[str, str]:
        return signed_headers(product, case.method, case.formatted_path, case.query)

    fuzz_operation(api_schema, method, path, sign, run="tenant")


def test_every_operation_was_fuzzed_and_signed_cases_got_through() -> None:
    """Runs last in the module: both runs reached every operation, and signed webhooks and inbox loads succeeded."""
    print("\nSchemathesis statuses:", {label: dict(counts) for label, counts in STATUSES.items()})
    print("Cases sent:", sum(sum(counts.values()) for counts in STATUSES.values()))
    assert len(OPERATIONS) >= 8
    for method, path in OPERATIONS:
        for run in ("anonymous", "tenant"):
            assert sum(STATUSES[f"{run} {method} {path}"].values()) > 0, (run, method, path)
    assert STATUSES["tenant POST /webhooks"][204] > 0
    assert STATUSES["tenant GET /api/events"][200] > 0
    assert STATUSES["tenant GET /inbox"][200] > 0
    assert STATUSES["tenant POST /installed"][400] > 0, "signed malformed installs reached payload validation"
