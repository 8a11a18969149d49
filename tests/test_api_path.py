"""`api_path`: each parameter percent-encoded as one path segment; hostile values refused before anything is sent."""

from __future__ import annotations

import httpx2
import pytest

from fastapi_connect_auth import ProductAPIError, UnsafeRequestError, api_path


@pytest.mark.parametrize(
    ("template", "params", "path"),
    [
        ("/rest/api/3/issue/{key}/comment", {"key": "DEMO-1"}, "/rest/api/3/issue/DEMO-1/comment"),
        ("/rest/api/3/issue/{key}", {"key": 10001}, "/rest/api/3/issue/10001"),
        ("/wiki/api/v2/pages/{id}/children", {"id": "65538"}, "/wiki/api/v2/pages/65538/children"),
        (
            "/rest/api/3/user/properties/{property}",
            {"property": "a b+c&d=e;f@g:h"},
            "/rest/api/3/user/properties/a%20b%2Bc%26d%3De%3Bf%40g%3Ah",
        ),
        (
            "/2.0/repositories/{workspace}/{repo}",
            {"workspace": "{b7ea}", "repo": "r"},
            "/2.0/repositories/%7Bb7ea%7D/r",
        ),
        ("/rest/api/3/issue/{key}", {"key": "ключ"}, "/rest/api/3/issue/%D0%BA%D0%BB%D1%8E%D1%87"),
        ("/rest/api/3/issue/{key}", {"key": "..."}, "/rest/api/3/issue/..."),
        ("/rest/api/3/myself", {}, "/rest/api/3/myself"),
    ],
)
def test_each_parameter_is_one_encoded_segment(template: str, params: dict[str, str | int], path: str) -> None:
    assert api_path(template, **params) == path
    assert httpx2.URL("https://api.atlassian.com/ex/jira/c" + path).path.startswith("/ex/jira/c/")


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "..",
        "../../admin",
        "a/b",
        "a\\b",
        "DEMO-1?expand=all",
        "DEMO-1#x",
        "%2e%2e",
        "DEMO%2F1",
        "DEMO-1\n",
        "\x00",
        "\x7f",
        "DEMO\u200e1",  # a format character
        "\u0085",
    ],
    ids=repr,
)
def test_hostile_values_are_refused(value: str) -> None:
    with pytest.raises(UnsafeRequestError) as refused:
        api_path("/rest/api/3/issue/{key}/comment", key=value)
    assert isinstance(refused.value, ProductAPIError)
    assert "'key'" in str(refused.value)
    if len(value) > 2:
        assert value not in str(refused.value)  # the value is not echoed


def test_mistakes_in_the_call_are_errors_of_the_caller() -> None:
    with pytest.raises(ValueError, match="have no value"):
        api_path("/rest/api/3/issue/{key}")
    with pytest.raises(ValueError, match="not in the template"):
        api_path("/rest/api/3/issue/{key}", key="A-1", expand="x")
    with pytest.raises(ValueError, match="starts with"):
        api_path("rest/api/3/issue/{key}", key="A-1")
    with pytest.raises(ValueError, match="brace"):
        api_path("/rest/api/3/issue/{key}/{", key="A-1")
    with pytest.raises(TypeError, match="string or an integer"):
        api_path("/rest/api/3/issue/{key}", key=True)
    with pytest.raises(TypeError, match="string or an integer"):
        api_path("/rest/api/3/issue/{key}", key=None)  # type: ignore[arg-type]
