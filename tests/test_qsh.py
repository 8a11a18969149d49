"""The query string hash against Atlassian's published vectors and the reference's edge cases.

Every expected canonical string and hash is written out literally (from the
atlassian-jwt test suite, the Haskell doctest, or atlassian-jwt 2.0.3 run
locally), so the tests do not depend on our own canonicalisation to decide
what is right.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastapi_connect_auth import CONTEXT_QSH, canonical_request, query_string_hash
from fastapi_connect_auth._connect._qsh import canonical_path, canonical_query, parse_query

HELLO_WORLD_PARAMS = [
    ("lic", "none"),
    ("tz", "Australia/Sydney"),
    ("cp", "/jira"),
    ("user_key", ""),
    ("loc", "en-US"),
    ("user_id", ""),
    ("xdm_e", "http://storm:2990"),
    ("xdm_c", "channel-servlet-hello-world"),
    ("xdm_p", "1"),
]
HELLO_WORLD_QUERY = (
    "lic=none&tz=Australia%2FSydney&cp=%2Fjira&user_key=&loc=en-US&user_id=&jwt=eyJhbGciOiJIUzI1NiJ9.e30.c2ln"
    "&xdm_e=http%3A%2F%2Fstorm%3A2990&xdm_c=channel-servlet-hello-world&xdm_p=1"
)
HELLO_WORLD_CANONICAL_QUERY = (
    "cp=%2Fjira&lic=none&loc=en-US&tz=Australia%2FSydney&user_id=&user_key="
    "&xdm_c=channel-servlet-hello-world&xdm_e=http%3A%2F%2Fstorm%3A2990&xdm_p=1"
)


def sha256_hex(canonical: str) -> str:
    """The qsh of a canonical string, computed without our library."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def utf16_code_units(text: str) -> list[int]:
    """JavaScript's sort key: the UTF-16 code units of `text`, surrogate pairs spelled out."""
    units: list[int] = []
    for char in text:
        point = ord(char)
        if point < 0x10000:
            units.append(point)
        else:
            point -= 0x10000
            units += [0xD800 + (point >> 10), 0xDC00 + (point & 0x3FF)]
    return units


# --- Published vectors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "base_url", "canonical", "qsh"),
    [
        pytest.param(
            "GET",
            "/path",
            "",
            "GET&/path&",
            "799be84a7fa35570087163c0cd9af3abff7ac05c2c12ba0bb1d7eebc984b3ac2",
            id="path-no-query",
        ),
        pytest.param(
            "GET", "", "", "GET&/&", "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239", id="empty"
        ),
        pytest.param(
            "GET", "/", "", "GET&/&", "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239", id="root"
        ),
        pytest.param(
            "GET",
            "/hello-world?" + HELLO_WORLD_QUERY,
            "",
            "GET&/hello-world&" + HELLO_WORLD_CANONICAL_QUERY,
            "8063ff4ca1e41df7bc90c8ab6d0f6207d491cf6dad7c66ea797b4614b71922e9",
            id="hello-world-jwt-removed",
        ),
        pytest.param(
            "POST",
            "/hello-world",
            "",
            "POST&/hello-world&",
            "6f95f3738e1b037a3bebbe0ad237d80fdbc1d5ae452e98ce03a9c004c178ebb4",
            id="post-without-body-params",
        ),
        pytest.param(
            "GET",
            "http://localhost:2990/path/to/service?a=1&A=2&b=3&B=4",
            "http://localhost:2990",
            "GET&/path/to/service&A=2&B=4&a=1&b=3",
            "70282c7cf82834bd5a3d6dacda1b4ccd5cf5860a63a1fa2fb86b64d576e6a1d5",
            id="haskell-uppercase-first",
        ),
    ],
)
def test_published_vectors(method: str, url: str, base_url: str, canonical: str, qsh: str) -> None:
    """The hashes published by Atlassian's atlassian-jwt tests and the Haskell doctest."""
    assert sha256_hex(canonical) == qsh
    assert query_string_hash(method, url, base_url) == qsh


def test_published_vector_with_parameters_from_the_body() -> None:
    """POST with the query's parameters sent in the body (checkBodyForParams): pairs go in directly."""
    canonical = "POST&/hello-world&" + HELLO_WORLD_CANONICAL_QUERY
    assert sha256_hex(canonical) == "d7e7f00660965fc15745b2c423a89b85d0853c4463faca362e0371d008eb0927"
    assert canonical_request("POST", "/hello-world", HELLO_WORLD_PARAMS) == canonical


REPEATED_PARAMS = [
    ("zee_last", "param"),
    ("repeated", "parameter 1"),
    ("first", "param"),
    ("repeated", "parameter 2"),
    ("repeated", "Parameter 2"),
]
REPEATED_CANONICAL = (
    "GET&/path/to/service&first=param&repeated=Parameter%202,parameter%201,parameter%202&zee_last=param"
)


def test_published_canonical_repeated_parameters() -> None:
    """Repeated values are sorted by code unit (`P` before `p`) and comma-joined."""
    assert canonical_request("GET", "/path/to/service", REPEATED_PARAMS) == REPEATED_CANONICAL


def test_published_canonical_repeated_parameters_under_a_base_path() -> None:
    """The same request under a product at `https://bitbucket.org/base`."""
    assert canonical_request("GET", "/base/path/to/service", REPEATED_PARAMS, "/base") == REPEATED_CANONICAL
    url = "https://bitbucket.org/base/path/to/service?" + "&".join(
        f"{key}={value.replace(' ', '%20')}" for key, value in REPEATED_PARAMS
    )
    assert query_string_hash("GET", url, "https://bitbucket.org/base") == sha256_hex(REPEATED_CANONICAL)


@pytest.mark.parametrize(
    ("method", "path", "query", "base_path", "canonical"),
    [
        pytest.param("GET", "/hello-world", "a&b=foo&c", "", "GET&/hello-world&a=&b=foo&c=", id="valueless-keys"),
        pytest.param(
            "POST",
            "/jira/rest/api/2/project/jira&a=b&c=d",
            "x=y",
            "/jira",
            "POST&/rest/api/2/project/jira%26a=b%26c=d&x=y",
            id="ampersands-in-path-under-base",
        ),
        pytest.param(
            "GET",
            "/jira/rest/api/2/project/jira",
            "x=y",
            "/jira",
            "GET&/rest/api/2/project/jira&x=y",
            id="base-path-stripped",
        ),
        pytest.param(
            "POST", "/rest/api/2/project&a=b", "x=y", "", "POST&/rest/api/2/project%26a=b&x=y", id="ampersand-in-path"
        ),
    ],
)
def test_published_canonical_requests(method: str, path: str, query: str, base_path: str, canonical: str) -> None:
    """The canonical-only vectors of the atlassian-jwt tests."""
    assert canonical_request(method, path, query, base_path) == canonical


# --- Vectors computed locally with atlassian-jwt 2.0.3 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "base_url", "canonical", "qsh"),
    [
        pytest.param(
            "GET",
            "https://example.atlassian.net/path/to/service"
            "?zee_last=param&repeated=parameter%201&first=param&repeated=parameter%202",
            "",
            "GET&/path/to/service&first=param&repeated=parameter%201,parameter%202&zee_last=param",
            "e52bb281606c3bd9ca16cfe96fe2df78f5d9ffa126f06befd750dfa10fa1a897",
            id="repeated",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/path/to/service?q=a+b&r=a%2Bb",
            "",
            "GET&/path/to/service&q=a%20b&r=a%2Bb",
            "7a6beb768b06bd41a9ec974274250e67ede83442538d11c5b91af63bc53f8f61",
            id="plus-is-space",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/base/path/to/service/?x=y",
            "https://app.example.com/base",
            "GET&/path/to/service&x=y",
            "a21e8bba5f9dc82d4fcc2a172453c7d48a4d18a43b745aa5a683baaf783b8654",
            id="base-and-trailing-slash",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/base",
            "https://app.example.com/base",
            "GET&/&",
            "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239",
            id="base-itself",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/base/",
            "https://app.example.com/base",
            "GET&/&",
            "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239",
            id="base-with-slash",
        ),
        pytest.param(
            "POST",
            "https://app.example.com/rest/api/2/project&a=b?x=y",
            "",
            "POST&/rest/api/2/project%26a=b&x=y",
            "fa48f57a98d3995f12c96664dae66fccc41a5b5dd8305ff6838d04b4b469cb17",
            id="ampersand-in-path",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/p?k=%7E%21%27%28%29%2A&s=a%20b",
            "",
            "GET&/p&k=~%21%27%28%29%2A&s=a%20b",
            "c4a67c12b7c6c73a188537c469c3e34e824d8a7f87a84df29d6c4bacb8161f5e",
            id="reserved-characters",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/installed?jwt=abc&lic=active",
            "",
            "GET&/installed&lic=active",
            "09c55da5b63428adec079df2bd1a922c7c6358fb595fc17c5f5b018b8e1df382",
            id="jwt-removed",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/p?b=2&a=3&a=1&a=10",
            "",
            "GET&/p&a=1,10,3&b=2",
            "67a19b35cd86b6733286b326af83f5c1ec8fe7c97faba43a50131aa86e239f06",
            id="values-sorted-as-text",
        ),
        pytest.param(
            "GET",
            "https://app.example.com/wiki/rest/api/space?expand=a,b",
            "https://x.atlassian.net/wiki",
            "GET&/rest/api/space&expand=a%2Cb",
            "bb17df2fd64435cc2b4e9155a53a97ceaf2d56998fcdbc6755aedac28ed69adc",
            id="only-base-path-matters",
        ),
    ],
)
def test_reference_implementation_vectors(method: str, url: str, base_url: str, canonical: str, qsh: str) -> None:
    """Hashes atlassian-jwt 2.0.3 computes for the same inputs."""
    assert sha256_hex(canonical) == qsh
    assert query_string_hash(method, url, base_url) == qsh


# --- Query canonicalisation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        pytest.param("q=a+b", "q=a%20b", id="plus"),
        pytest.param("q=a%20b", "q=a%20b", id="percent-20"),
        pytest.param("q=a%2Bb", "q=a%2Bb", id="percent-2B"),
        pytest.param("a+b=c", "a%20b=c", id="plus-in-key"),
        pytest.param("k=2&k=1&k=1", "k=1,1,2", id="repeated-values-sorted-duplicates-kept"),
        pytest.param("k=b&j=x&k=a", "j=x&k=a,b", id="repeated-key-not-adjacent"),
        pytest.param("k=,&k=a", "k=%2C,a", id="comma-in-value-encoded"),
        pytest.param("a=", "a=", id="empty-value"),
        pytest.param("a", "a=", id="no-equals"),
        pytest.param("a=&a", "a=,", id="two-empty-values"),
        pytest.param("a==b", "a=%3Db", id="equals-in-value"),
        pytest.param("&&a=1&", "a=1", id="empty-parts-skipped"),
        pytest.param("", "", id="no-query"),
        pytest.param("jwt=x.y.z", "", id="only-jwt"),
        pytest.param("jwt=1&jwt=2&a=b", "a=b", id="repeated-jwt"),
        pytest.param("JWT=x", "JWT=x", id="jwt-is-case-sensitive"),
        pytest.param("k=!'()*~", "k=%21%27%28%29%2A~", id="raw-reserved"),
        pytest.param("k=-._~", "k=-._~", id="unreserved-kept"),
        pytest.param("k=a/b?c:d@e;f$g", "k=a%2Fb%3Fc%3Ad%40e%3Bf%24g", id="gen-delims"),
        pytest.param("k=%C3%A9", "k=%C3%A9", id="encoded-non-ascii"),
        pytest.param("k=é", "k=%C3%A9", id="raw-non-ascii"),
        pytest.param("k=%F0%9F%98%80", "k=%F0%9F%98%80", id="emoji"),
        pytest.param("b=1&B=2&a=3&A=4&_=5", "A=4&B=2&_=5&a=3&b=1", id="code-unit-order"),
    ],
)
def test_canonical_query(query: str, canonical: str) -> None:
    """One rule per case, each as the reference implementation applies it."""
    assert canonical_query(parse_query(query)) == canonical
    assert canonical_request("GET", "/", query) == "GET&/&" + canonical


def test_parse_query_keeps_order_and_repeats() -> None:
    """Pairs come back decoded, in the order sent, `+` as space and a bare key as empty."""
    assert parse_query("b=2&a=x+y&b=1&c&d=%2B") == [("b", "2"), ("a", "x y"), ("b", "1"), ("c", ""), ("d", "+")]


def test_values_sort_by_utf16_code_units_like_javascript() -> None:
    """U+FFFF sorts after an emoji in JavaScript (0xFFFF > 0xD83D), though before it by code point."""
    emoji, last_bmp = "\U0001f600", "\uffff"
    assert sorted([last_bmp, emoji]) == [last_bmp, emoji]  # Python's own order differs
    expected = "k=%F0%9F%98%80,%EF%BF%BF"
    assert canonical_query([("k", last_bmp), ("k", emoji)]) == expected
    assert canonical_query([("k", emoji), ("k", last_bmp)]) == expected


def test_keys_sort_by_utf16_code_units_like_javascript() -> None:
    """The same order applies to keys."""
    expected = "%F0%9F%98%80=1&%EF%BF%BF=2"
    assert canonical_query([("\uffff", "2"), ("\U0001f600", "1")]) == expected
    assert canonical_request("GET", "/", "%EF%BF%BF=2&%F0%9F%98%80=1") == "GET&/&" + expected


def test_decoded_pairs_are_encoded() -> None:
    """Pairs given already decoded (form bodies) are encoded like a raw query."""
    assert canonical_request("post", "/x", [("a b", "c&d"), ("jwt", "t")]) == "POST&/x&a%20b=c%26d"


# --- Path canonicalisation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "base_path", "canonical"),
    [
        pytest.param("", "", "/", id="empty"),
        pytest.param("/", "", "/", id="root"),
        pytest.param("/x/", "", "/x", id="one-trailing-slash-dropped"),
        pytest.param("/x//", "", "/x/", id="only-one-trailing-slash-dropped"),
        pytest.param("x", "", "/x", id="leading-slash-added"),
        pytest.param("/a&b&c", "", "/a%26b%26c", id="ampersands"),
        pytest.param("/a%20b/%2F", "", "/a%20b/%2F", id="percent-encoding-kept-as-sent"),
        pytest.param("/base/x", "/base", "/x", id="base-stripped"),
        pytest.param("/base", "/base", "/", id="base-itself"),
        pytest.param("/base/", "/base", "/", id="base-with-slash"),
        pytest.param("/basement/x", "/base", "/ment/x", id="base-is-a-plain-prefix"),
        pytest.param("/base/x", "/base/", "/x", id="base-with-trailing-slash"),
        pytest.param("/other/x", "/base", "/other/x", id="not-under-base"),
        pytest.param("/x", "/", "/x", id="root-base"),
    ],
)
def test_canonical_path(path: str, base_path: str, canonical: str) -> None:
    """The path rules of atlassian-jwt's canonicalizeUri."""
    assert canonical_path(path, base_path) == canonical


def test_method_is_upper_cased() -> None:
    assert canonical_request("delete", "/x", "") == "DELETE&/x&"
    assert query_string_hash("get", "/path") == "799be84a7fa35570087163c0cd9af3abff7ac05c2c12ba0bb1d7eebc984b3ac2"


def test_query_string_hash_matches_an_independent_sha256() -> None:
    """A request exercising every rule at once, its canonical string written out by hand."""
    url = "https://app.example.com/app/issue/a&b/?z=%E2%9C%93&jwt=t&b=2+2&b=1%2C1&a&%F0%9F%98%80=%21"
    canonical = "GET&/issue/a%26b&a=&b=1%2C1,2%202&z=%E2%9C%93&%F0%9F%98%80=%21"
    assert query_string_hash("GET", url, "https://app.example.com/app") == sha256_hex(canonical)


def test_context_qsh_is_the_fixed_string() -> None:
    assert CONTEXT_QSH == "context-qsh"


# --- Properties ----------------------------------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
_PAIRS = st.lists(st.tuples(_TEXT.filter(lambda key: key != "jwt"), _TEXT), max_size=8)
_CANONICAL_ALPHABET = re.compile(r"[A-Za-z0-9\-._~%=&,]*")


@given(pairs=_PAIRS, data=st.data())
def test_canonical_query_ignores_input_order(pairs: list[tuple[str, str]], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(pairs))
    assert canonical_query(shuffled) == canonical_query(pairs)


@given(pairs=_PAIRS)
def test_canonical_query_is_fully_encoded(pairs: list[tuple[str, str]]) -> None:
    """Only unreserved characters, escapes and the three separators appear."""
    assert _CANONICAL_ALPHABET.fullmatch(canonical_query(pairs))


@given(pairs=_PAIRS)
def test_canonical_query_round_trips(pairs: list[tuple[str, str]]) -> None:
    """Decoding the canonical query gives the keys and values back, each sorted as JavaScript sorts."""
    canonical = canonical_query(pairs)
    decoded: list[tuple[str, list[str]]] = []
    for part in canonical.split("&") if canonical else []:
        key, _, joined_values = part.partition("=")
        decoded.append((unquote(key), [unquote(value) for value in joined_values.split(",")]))
    expected_keys = sorted({key for key, _ in pairs}, key=utf16_code_units)
    assert [key for key, _ in decoded] == expected_keys
    for key, values in decoded:
        assert values == sorted((v for k, v in pairs if k == key), key=utf16_code_units)


@given(pairs=_PAIRS)
def test_parse_query_inverts_percent_encoding(pairs: list[tuple[str, str]]) -> None:
    """A query encoded the way Atlassian encodes it parses back to the same pairs."""
    query = "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs)
    assert parse_query(query) == pairs
