"""Webhooks, page loads and iframe calls through `ConnectRequest`.

Ports the Node library's `test/verifyRequest.test.ts` ("verifyRequest" and
"verifyRequest with signed install", whose one use is `uninstalled`: here both
our `uninstalled` route and `ConnectRequest(authorization_method="publicKey")`),
then pins down token transport, times, mounting, extension points and logging.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    AuthError,
    AuthErrorCode,
    ConnectAuth,
    ConnectLifecycle,
    ConnectRequest,
    RequestTarget,
    VerifiedRequest,
    request_target,
)
from tests.conftest import (
    BASE_URL,
    CLIENT_KEY,
    KID,
    NOW,
    SHARED_SECRET,
    ConnectApp,
    ConnectAppFactory,
    KeyServer,
    LoaderKind,
    TenantStore,
    Tokens,
    add_request_routes,
    auth_header,
    hash_canonical,
    install_body,
    lifecycle_body,
    qsh_for,
)

PRODUCTION_KEY_URL = f"https://asap-distribution.us-west-2.prod.atl-asap.net/{KID}"
TokenMaker = Callable[[Tokens], str]


def assert_rejected(response: httpx2.Response, code: str, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def assert_verified(response: httpx2.Response, client_key: str = CLIENT_KEY) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["client_key"] == client_key


@pytest.fixture
def app(connect_app: ConnectApp) -> ConnectApp:
    """The default app with the tenant `client-key` installed."""
    connect_app.tenants.add()
    return connect_app


# -- verifyRequest: QSH modes -----------------------------------------------------------------------------

QSH_KINDS: dict[str, Callable[[str], str | None]] = {
    "computed": lambda route: qsh_for("GET", route),
    "other-url": lambda route: qsh_for("GET", "/somewhere-else"),
    "context": lambda route: "context-qsh",
    "missing": lambda route: None,
}
QSH_MATRIX: dict[str, dict[str, str | None]] = {  # route's mode -> token's qsh -> the error code, or None
    "computed": {"computed": None, "other-url": "INVALID_QSH", "context": "INVALID_QSH", "missing": "MISSING_QSH"},
    "context": {"computed": "INVALID_QSH", "other-url": "INVALID_QSH", "context": None, "missing": "MISSING_QSH"},
    "any": {"computed": None, "other-url": "INVALID_QSH", "context": None, "missing": "MISSING_QSH"},
    "skip": {"computed": None, "other-url": None, "context": None, "missing": None},
}


@pytest.mark.parametrize(
    ("mode", "kind", "code"),
    [(mode, kind, code) for mode, row in QSH_MATRIX.items() for kind, code in row.items()],
    ids=[f"{mode}-route-{kind}-qsh" for mode, row in QSH_MATRIX.items() for kind in row],
)
def test_qsh_mode_matrix(app: ConnectApp, tokens: Tokens, mode: str, kind: str, code: str | None) -> None:
    """Covers the Node tests: skipped, context, context with any, computed, computed with any; missing and invalid."""
    route = f"/{mode}"

    response = app.get(route, tokens.hs256(QSH_KINDS[kind](route)))

    if code is None:
        assert_verified(response)
    else:
        assert_rejected(response, code)


# -- verifyRequest: failures -------------------------------------------------------------------------------

REQUEST_FAILURES: dict[str, tuple[TokenMaker, str]] = {
    "to decode token": (lambda t: "eyJhbGciOiJIUzI1NiJ9.not-json.sig", "FAILED_TO_DECODE"),
    "issuer is unknown (not found)": (lambda t: t.hs256(qsh_for("GET", "/computed"), iss="stranger"), "UNKNOWN_ISSUER"),
    "JWT signature is invalid": (
        lambda t: t.hs256(qsh_for("GET", "/computed"), secret="a-secret-that-is-not-the-tenants-one"),
        "INVALID_SIGNATURE",
    ),
    "JWT is expired": (lambda t: t.hs256(qsh_for("GET", "/computed"), exp=NOW - 3600), "TOKEN_EXPIRED"),
    "JWT is not valid yet": (lambda t: t.hs256(qsh_for("GET", "/computed"), nbf=NOW + 3600), "TOKEN_NOT_YET_VALID"),
    "JWT has no exp": (lambda t: t.hs256(qsh_for("GET", "/computed"), exp=None), "FAILED_TO_DECODE"),
    "QSH is missing": (lambda t: t.hs256(None), "MISSING_QSH"),
    "QSH is invalid": (lambda t: t.hs256(qsh_for("POST", "/computed")), "INVALID_QSH"),
    "context QSH is invalid": (lambda t: t.context(), "INVALID_QSH"),
    "JWT is signed by Atlassian's key": (lambda t: t.rs256(qsh_for("GET", "/computed")), "INVALID_ALGORITHM"),
}


@pytest.mark.parametrize(("make_token", "code"), REQUEST_FAILURES.values(), ids=REQUEST_FAILURES)
def test_request_fails(app: ConnectApp, tokens: Tokens, make_token: TokenMaker, code: str) -> None:
    response = app.get("/computed", make_token(tokens))

    assert_rejected(response, code)
    assert response.headers["WWW-Authenticate"] == "JWT"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # read as JSON, never sniffed as a page


def test_request_fails_due_to_missing_token(app: ConnectApp) -> None:
    assert_rejected(app.get("/computed"), "MISSING_JWT")


# -- token transport ---------------------------------------------------------------------------------------


def test_token_in_the_authorization_header(app: ConnectApp, tokens: Tokens) -> None:
    assert_verified(app.get("/computed", tokens.hs256(qsh_for("GET", "/computed"))))


def test_token_in_the_jwt_query_parameter_is_left_out_of_the_qsh(app: ConnectApp, tokens: Tokens) -> None:
    token = tokens.hs256(hash_canonical("GET&/computed&lic=active&xdm_e=https%3A%2F%2Ftenant.atlassian.net"))

    response = app.get(f"/computed?lic=active&jwt={token}&xdm_e=https%3A%2F%2Ftenant.atlassian.net")

    assert_verified(response)


def test_two_jwt_query_parameters_are_rejected(app: ConnectApp, tokens: Tokens) -> None:
    token = tokens.hs256(qsh_for("GET", "/computed"))

    response = app.get(f"/computed?jwt={token}&jwt={token}")

    assert_rejected(response, "FAILED_TO_DECODE")


def test_bearer_authorization_is_not_a_connect_token(app: ConnectApp, tokens: Tokens) -> None:
    token = tokens.hs256(qsh_for("GET", "/computed"))

    bearer_only = app.get("/computed", headers={"Authorization": f"Bearer {token}"})
    bearer_and_query = app.get(f"/computed?jwt={token}", headers={"Authorization": "Bearer x"})

    assert_rejected(bearer_only, "MISSING_JWT")
    assert_verified(bearer_and_query)


@pytest.mark.parametrize("authorization", ["JWT", "JWT   ", "jwt"])
def test_jwt_scheme_without_a_token_is_missing(app: ConnectApp, authorization: str) -> None:
    assert_rejected(app.get("/computed", headers={"Authorization": authorization}), "MISSING_JWT")


def test_jwt_scheme_is_case_insensitive(app: ConnectApp, tokens: Tokens) -> None:
    token = tokens.hs256(qsh_for("GET", "/computed"))

    assert_verified(app.get("/computed", headers={"Authorization": f"jwt {token}"}))


def test_optional_route_yields_none_only_when_there_is_no_token(app: ConnectApp, tokens: Tokens) -> None:
    anonymous = app.get("/optional")
    bearer_only = app.get("/optional", headers={"Authorization": "Bearer x"})
    forged = app.get(
        "/optional", tokens.hs256(qsh_for("GET", "/optional"), secret="forged-by-someone-who-guessed-the-route")
    )
    verified = app.get("/optional", tokens.hs256(qsh_for("GET", "/optional")))

    assert anonymous.status_code == 200
    assert anonymous.json() is None
    assert bearer_only.json() is None
    assert_rejected(forged, "INVALID_SIGNATURE")
    assert_verified(verified)


# -- times ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "leeway", "code"),
    [
        ({"exp": NOW - 10}, 30.0, None),
        ({"exp": NOW - 10}, 0.0, "TOKEN_EXPIRED"),
        ({"exp": NOW}, 0.0, "TOKEN_EXPIRED"),
        ({"nbf": NOW + 10}, 30.0, None),
        ({"nbf": NOW + 10}, 0.0, "TOKEN_NOT_YET_VALID"),
        ({"nbf": NOW}, 0.0, None),
    ],
    ids=[
        "expired-within-leeway",
        "expired-no-leeway",
        "exp-now",
        "nbf-within-leeway",
        "nbf-no-leeway",
        "nbf-now",
    ],
)
def test_leeway_is_honoured(
    make_connect_app: ConnectAppFactory, tokens: Tokens, claims: dict[str, Any], leeway: float, code: str | None
) -> None:
    app = make_connect_app(leeway=leeway)
    app.tenants.add()

    response = app.get("/computed", tokens.hs256(qsh_for("GET", "/computed"), **claims))

    if code is None:
        assert_verified(response)
    else:
        assert_rejected(response, code)


# -- tenants -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", ["sync", "async"])
def test_sync_and_async_loaders(make_connect_app: ConnectAppFactory, tokens: Tokens, loader: LoaderKind) -> None:
    app = make_connect_app(loader=loader)
    entity = app.tenants.add()

    known = app.get("/computed", tokens.hs256(qsh_for("GET", "/computed")))
    unknown = app.get("/computed", tokens.hs256(qsh_for("GET", "/computed"), iss="stranger"))

    assert_verified(known)
    assert known.json()["stored_entity"] == entity
    assert_rejected(unknown, "UNKNOWN_ISSUER")


def test_uninstalled_tenant_is_an_unknown_issuer(app: ConnectApp, tokens: Tokens) -> None:
    webhook = tokens.hs256(qsh_for("POST", "/webhook"))
    before = app.post("/webhook", webhook)

    uninstalled = app.lifecycle("uninstalled", tokens.rs256(qsh_for("POST", "/uninstalled")))
    after = app.post("/webhook", webhook)

    assert_verified(before)
    assert uninstalled.status_code == 200, uninstalled.text
    assert_rejected(after, "UNKNOWN_ISSUER")


def test_account_id_comes_from_the_context_user_else_sub(app: ConnectApp, tokens: Tokens) -> None:
    qsh = qsh_for("GET", "/computed")
    with_user = tokens.hs256(qsh, context={"user": {"accountId": "557058:ctx-user"}})

    assert app.get("/computed", with_user).json()["account_id"] == "557058:ctx-user"
    assert app.get("/computed", tokens.hs256(qsh)).json()["account_id"] == "account-1"


# -- URLs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("/computed?b=2&a=3&a=1&a=10", "GET&/computed&a=1,10,3&b=2"),
        ("/computed?q=a+b&r=a%2Bb", "GET&/computed&q=a%20b&r=a%2Bb"),
        ("/computed?A=2&a=1&B=4&b=3", "GET&/computed&A=2&B=4&a=1&b=3"),
        ("/computed?a&b=foo&c", "GET&/computed&a=&b=foo&c="),
        ("/computed?expand=a,b&k=%7E%21%27%28%29%2A", "GET&/computed&expand=a%2Cb&k=~%21%27%28%29%2A"),
        ("/items/a%20b", "GET&/items/a%20b&"),
        ("/items/a&b?x=y", "GET&/items/a%26b&x=y"),
    ],
    ids=["repeated-keys", "plus", "case-order", "valueless", "reserved", "encoded-path", "ampersand-path"],
)
def test_query_and_path_canonicalised_as_atlassian_does(
    app: ConnectApp, tokens: Tokens, url: str, canonical: str
) -> None:
    response = app.get(url, tokens.hs256(hash_canonical(canonical)))

    assert_verified(response)


def test_app_mounted_under_a_prefix_verifies_the_computed_qsh(
    make_connect_app: ConnectAppFactory, tokens: Tokens
) -> None:
    """The base URL's path is not part of the canonical path, as in Atlassian's canonicalisation."""
    app = make_connect_app(mount_at="/connect", base_url=f"{BASE_URL}/connect")
    app.tenants.add()

    relative = app.get("/computed", tokens.hs256(qsh_for("GET", "/computed")))
    full_path = app.get("/computed", tokens.hs256(qsh_for("GET", "/connect/computed")))

    assert_verified(relative)
    assert_rejected(full_path, "INVALID_QSH")


@pytest.mark.parametrize("path", ["/computed", "/connect/computed"], ids=["prefix-stripped", "prefix-kept"])
def test_app_behind_a_proxy_with_root_path_verifies_the_computed_qsh(
    make_connect_app: ConnectAppFactory, tokens: Tokens, path: str
) -> None:
    app = make_connect_app(root_path="/connect", base_url=f"{BASE_URL}/connect")
    app.tenants.add()

    response = app.client.get(path, headers=auth_header(tokens.hs256(qsh_for("GET", "/computed"))))

    assert_verified(response)


@pytest.mark.parametrize(
    ("path", "raw_path", "root_path", "expected"),
    [
        ("/items/a b", b"/items/a%20b", "", "/items/a%20b"),
        ("/connect/items/a b", b"/items/a%20b", "/connect", "/connect/items/a%20b"),
        ("/items/a b", None, "", "/items/a%20b"),
        ("/rewritten/a b", b"/original/x", "", "/rewritten/a%20b"),
    ],
    ids=["raw-path-as-sent", "root-path-not-in-raw-path", "no-raw-path", "path-rewritten-by-middleware"],
)
def test_request_target_uses_the_path_as_sent(path: str, raw_path: bytes | None, root_path: str, expected: str) -> None:
    """Servers differ: uvicorn's `--root-path` prefixes `path` but not `raw_path`; some send no `raw_path`."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": root_path,
        "query_string": b"a=1",
        "headers": [],
    }
    if raw_path is not None:
        scope["raw_path"] = raw_path

    assert request_target(Request(scope)) == RequestTarget("GET", expected, "a=1")


# -- extension points and wiring -----------------------------------------------------------------------------------


class HeaderTokenRequest(ConnectRequest):
    """A proxy that moves the token to `X-Connect-JWT`: the Node library's custom `AuthDataProvider`."""

    def extract_token(self, request: Request) -> str | None:
        return request.headers.get("x-connect-jwt")


def add_custom_header_route(app: FastAPI) -> None:
    @app.get("/custom")
    async def custom(call: Annotated[VerifiedRequest[Any], Depends(HeaderTokenRequest())]) -> str:
        return call.client_key


def test_subclass_overriding_extract_token(make_connect_app: ConnectAppFactory, tokens: Tokens) -> None:
    app = make_connect_app(extra_routes=add_custom_header_route)
    app.tenants.add()
    token = tokens.hs256(qsh_for("GET", "/custom"))

    custom_header = app.client.get("/custom", headers={"X-Connect-JWT": token})
    standard_header = app.client.get("/custom", headers=auth_header(token))

    assert custom_header.status_code == 200, custom_header.text
    assert custom_header.json() == CLIENT_KEY
    assert_rejected(standard_header, "MISSING_JWT")


@pytest.fixture
def unattached_connect(tenants: TenantStore) -> ConnectAuth:
    """A `ConnectAuth` that no app has `install()`ed."""
    tenants.add()
    return ConnectAuth(base_url=BASE_URL, credentials_loader=tenants.load, clock=lambda: NOW)


def test_config_parameter_works_without_install(unattached_connect: ConnectAuth, tokens: Tokens) -> None:
    app = FastAPI()
    add_request_routes(app, config=unattached_connect)

    with TestClient(app, base_url=BASE_URL) as client:
        verified = client.get("/computed", headers=auth_header(tokens.hs256(qsh_for("GET", "/computed"))))
        rejected = client.get("/computed", headers=auth_header(tokens.hs256(qsh_for("GET", "/elsewhere"))))

    assert_verified(verified)
    # Without our handler FastAPI answers the HTTPException itself: still 401, with the challenge.
    assert rejected.status_code == 401
    assert rejected.headers["WWW-Authenticate"] == "JWT"
    assert "query string hash" in rejected.json()["detail"]


def test_neither_install_nor_config_is_a_developer_error(tokens: Tokens) -> None:
    app = FastAPI()
    add_request_routes(app)

    with TestClient(app, base_url=BASE_URL) as client, pytest.raises(RuntimeError, match=r"connect\.install\(app\)"):
        client.get("/computed", headers=auth_header(tokens.hs256(qsh_for("GET", "/computed"))))


# -- verifyRequest with signed install (uninstalled, and publicKey request routes) ---------------------------------

SIGNED_ROUTES = ["uninstalled-route", "signed-request-route"]


def send_signed(app: ConnectApp, route: str, make_token: Callable[[str], str | None]) -> httpx2.Response:
    """Send an RS256 token to `route`; `make_token(qsh)` receives the correct QSH for it."""
    if route == "uninstalled-route":
        return app.lifecycle("uninstalled", make_token(qsh_for("POST", "/uninstalled")))
    return app.get("/signed", make_token(qsh_for("GET", "/signed")))


@pytest.mark.parametrize("route", SIGNED_ROUTES)
def test_signed_uninstallation_succeeds(app: ConnectApp, tokens: Tokens, route: str) -> None:
    """Also the Node test "with default key provider": the key comes from the production CDN."""
    response = send_signed(app, route, lambda qsh: tokens.rs256(qsh))

    assert_verified(response)
    assert app.key_server.requests == [PRODUCTION_KEY_URL]


def test_signed_request_without_qsh_checking(app: ConnectApp, tokens: Tokens) -> None:
    """`qsh="skip"` also skips the QSH of an RS256 token (the Node "without QSH checking")."""
    assert_verified(app.get("/signed-skip", tokens.rs256(None)))


def test_signed_uninstall_route_never_skips_the_qsh(app: ConnectApp, tokens: Tokens) -> None:
    """Unlike the Node library, a lifecycle callback always checks its QSH."""
    assert_rejected(app.lifecycle("uninstalled", tokens.rs256(None)), "MISSING_QSH")


SIGNED_FAILURES: dict[str, tuple[Callable[[Tokens, str], str | None], str]] = {
    "JWT is missing": (lambda t, qsh: None, "MISSING_JWT"),
    "JWT aud is missing": (lambda t, qsh: t.rs256(qsh, aud=None), "WRONG_AUDIENCE"),
    "JWT aud is different than baseUrl": (lambda t, qsh: t.rs256(qsh, aud=["https://x.example"]), "WRONG_AUDIENCE"),
    "JWT kid is missing": (lambda t, qsh: t.rs256(qsh, kid=None), "MISSING_KID"),
    "fetching public key": (lambda t, qsh: t.rs256(qsh, kid="prod/not-on-the-cdn.pem"), "FAILED_TO_OBTAIN_PUBLIC_KEY"),
    "JWT is expired": (lambda t, qsh: t.rs256(qsh, exp=NOW - 3600), "TOKEN_EXPIRED"),
    "QSH is missing": (lambda t, qsh: t.rs256(None), "MISSING_QSH"),
    "QSH is invalid": (lambda t, qsh: t.rs256(qsh_for("DELETE", "/elsewhere")), "INVALID_QSH"),
    "JWT signature is invalid": (lambda t, qsh: t.rs256(qsh, key=t.foreign_key), "INVALID_SIGNATURE"),
    "JWT is signed with the shared secret": (lambda t, qsh: t.hs256(qsh), "INVALID_ALGORITHM"),
}


@pytest.mark.parametrize(("make_token", "code"), SIGNED_FAILURES.values(), ids=SIGNED_FAILURES)
@pytest.mark.parametrize("route", SIGNED_ROUTES)
def test_signed_uninstallation_fails(
    app: ConnectApp,
    tokens: Tokens,
    route: str,
    make_token: Callable[[Tokens, str], str | None],
    code: str,
) -> None:
    response = send_signed(app, route, lambda qsh: make_token(tokens, qsh))

    assert_rejected(response, code)
    assert app.tenants.secret_of() == SHARED_SECRET


@pytest.mark.parametrize("route", SIGNED_ROUTES)
def test_signed_uninstallation_fails_because_issuer_is_unknown(
    connect_app: ConnectApp, tokens: Tokens, route: str
) -> None:
    assert_rejected(send_signed(connect_app, route, lambda qsh: tokens.rs256(qsh)), "UNKNOWN_ISSUER")


def test_signed_uninstallation_fails_because_issuer_is_not_the_client_key(app: ConnectApp, tokens: Tokens) -> None:
    app.tenants.add("other-client")
    token = tokens.rs256(qsh_for("POST", "/uninstalled"), iss="other-client")

    response = app.lifecycle("uninstalled", token)

    assert_rejected(response, "WRONG_ISSUER")
    assert app.tenants.secret_of() == SHARED_SECRET


# -- logging -----------------------------------------------------------------------------------------------------


@pytest.fixture
def connect_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="fastapi_connect_auth")
    return caplog


def test_rejections_log_a_warning_with_the_code(
    app: ConnectApp, tokens: Tokens, connect_logs: pytest.LogCaptureFixture
) -> None:
    for token, code in [
        (tokens.hs256(qsh_for("GET", "/computed"), iss="stranger"), "UNKNOWN_ISSUER"),
        (tokens.hs256(qsh_for("GET", "/computed"), secret="a-wrong-secret-of-sufficient-size"), "INVALID_SIGNATURE"),
        (tokens.hs256(qsh_for("GET", "/computed"), exp=NOW - 3600), "TOKEN_EXPIRED"),
    ]:
        connect_logs.clear()
        assert_rejected(app.get("/computed", token), code)
        warnings = [record for record in connect_logs.records if record.levelno == logging.WARNING]
        assert any(code in record.getMessage() for record in warnings), connect_logs.text


def test_invalid_qsh_logs_the_canonical_request_in_debug_mode_only(
    make_connect_app: ConnectAppFactory, tokens: Tokens, connect_logs: pytest.LogCaptureFixture
) -> None:
    token = tokens.hs256(qsh_for("GET", "/computed"))
    default = make_connect_app().get("/computed?b=2&a=1", token)
    assert "GET&/computed&a=1&b=2" not in connect_logs.text

    response = make_connect_app(base_url="http://localhost:8000", debug=True).get("/computed?b=2&a=1", token)

    assert_rejected(default, "INVALID_QSH")
    assert_rejected(response, "INVALID_QSH")
    assert "(debug) The canonical request we computed: GET&/computed&a=1&b=2" in connect_logs.text
    assert "GET&" not in response.text  # in the log, never in the answer


def test_no_token_or_secret_in_any_response_or_log(
    app: ConnectApp, tokens: Tokens, key_server: KeyServer, connect_logs: pytest.LogCaptureFixture
) -> None:
    """Successes and every kind of rejection: the token, its signature and the shared secrets never leak."""
    secret_in_body = "the-install-secret-that-must-stay-put"
    sent_tokens = [
        tokens.hs256(qsh_for("GET", "/computed")),
        tokens.hs256(qsh_for("GET", "/elsewhere")),
        tokens.hs256(qsh_for("GET", "/computed"), secret="a-wrong-secret-of-sufficient-size"),
        tokens.hs256(qsh_for("GET", "/computed"), iss="stranger"),
        tokens.hs256(qsh_for("GET", "/computed"), exp=NOW - 3600),
        tokens.rs256(qsh_for("GET", "/computed")),
    ]
    responses = [app.get("/computed", token) for token in sent_tokens]
    responses.append(app.get(f"/computed?jwt={sent_tokens[0]}&jwt={sent_tokens[1]}"))
    install_token = tokens.rs256(qsh_for("POST", "/installed"), kid="prod/not-on-the-cdn.pem")
    sent_tokens.append(install_token)
    responses.append(app.install(install_body(sharedSecret=secret_in_body), install_token))
    responses.append(app.install(install_body(sharedSecret=secret_in_body, baseUrl="ftp://x"), install_token))
    uninstall_token = tokens.rs256(qsh_for("POST", "/uninstalled"), key=tokens.foreign_key)
    sent_tokens.append(uninstall_token)
    responses.append(app.lifecycle("uninstalled", uninstall_token, lifecycle_body("uninstalled")))

    assert [response.status_code for response in responses] == [200] + [401] * 7 + [400, 401]
    for text in [*(response.text for response in responses), connect_logs.text]:
        for secret in [SHARED_SECRET, secret_in_body]:
            assert secret not in text
        for token in sent_tokens:
            assert token not in text
            assert token.rpartition(".")[2] not in text
    assert key_server.requests  # the key fetches happened, and were logged without the token


# -- developer errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": []},
        {"base_url": "test.example.com"},
        {"base_url": "ftp://test.example.com"},
        {"base_url": "https://test.example.com/?x=1"},
        {"base_url": BASE_URL, "authorization_method": "publickey"},
    ],
    ids=["no-base-url", "no-scheme", "not-http", "query", "unknown-method"],
)
def test_misconfigured_connect_auth_fails_at_startup(tenants: TenantStore, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"base_url|authorization_method"):
        ConnectAuth(credentials_loader=tenants.load, **options)


def test_misconfigured_dependencies_fail_at_startup() -> None:
    with pytest.raises(ValueError, match="qsh"):
        ConnectRequest(qsh="computd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ConnectInstall"):
        ConnectLifecycle("installed")  # type: ignore[arg-type]


def test_auth_error_describes_itself_by_code_and_message() -> None:
    error = AuthError(AuthErrorCode.INVALID_QSH, "The query string hash does not match this request.")

    assert str(AuthErrorCode.INVALID_QSH) == "INVALID_QSH"
    assert str(error) == "INVALID_QSH: The query string hash does not match this request."
    assert repr(error) == (
        "AuthError(code='INVALID_QSH', message='The query string hash does not match this request.')"
    )
    assert (error.status_code, error.headers) == (401, {"WWW-Authenticate": "JWT"})
