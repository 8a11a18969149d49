"""The product-host allow-list: which base URLs may install the app, and in which environment."""

from __future__ import annotations

import pytest

from fastapi_connect_auth import ConnectEnvironment, ProductHosts

PRODUCTION = ConnectEnvironment.PRODUCTION
STAGING = ConnectEnvironment.STAGING
FEDRAMP = ConnectEnvironment.FEDRAMP
FEDRAMP_STAGING = ConnectEnvironment.FEDRAMP_STAGING
ALL_ENVIRONMENTS = ProductHosts.of(environments=list(ConnectEnvironment))


@pytest.mark.parametrize(
    ("base_url", "environment"),
    [
        ("https://example.atlassian.net", PRODUCTION),
        ("https://example.atlassian.net/wiki", PRODUCTION),
        ("https://EXAMPLE.Atlassian.NET/", PRODUCTION),
        ("https://example.atlassian.net:443/jira", PRODUCTION),
        ("https://a.b.atlassian.net", PRODUCTION),
        ("https://example.jira.com", PRODUCTION),
        ("https://bitbucket.org", PRODUCTION),
        ("https://api.bitbucket.org/2.0", PRODUCTION),
        ("https://example.jira-dev.com", STAGING),
        ("https://example.atlassian-us-gov-mod.net", FEDRAMP),
        ("https://example.atlassian-stg-fedm.net", FEDRAMP_STAGING),
    ],
)
def test_atlassian_hosts_map_to_their_environment(base_url: str, environment: ConnectEnvironment) -> None:
    assert ALL_ENVIRONMENTS.environment_of(base_url) is environment


def test_default_allows_production_only() -> None:
    hosts = ProductHosts()
    assert hosts.environment_of("https://example.atlassian.net") is PRODUCTION
    for base_url in (
        "https://example.jira-dev.com",
        "https://example.atlassian-us-gov-mod.net",
        "https://example.atlassian-stg-fedm.net",
    ):
        assert hosts.environment_of(base_url) is None


def test_disabled_environments_are_refused() -> None:
    hosts = ProductHosts.of(environments=["staging", ConnectEnvironment.FEDRAMP])
    assert hosts.environment_of("https://example.jira-dev.com") is STAGING
    assert hosts.environment_of("https://example.atlassian-us-gov-mod.net") is FEDRAMP
    assert hosts.environment_of("https://example.atlassian.net") is None
    assert hosts.environment_of("https://bitbucket.org") is None
    assert hosts.environment_of("https://example.atlassian-stg-fedm.net") is None


def test_no_environment_refuses_everything() -> None:
    assert ProductHosts.of(environments=[]).environment_of("https://example.atlassian.net") is None


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://example.atlassian.net", id="plain-http"),
        pytest.param("ftp://example.atlassian.net", id="other-scheme"),
        pytest.param("example.atlassian.net", id="no-scheme"),
        pytest.param("//example.atlassian.net", id="scheme-relative"),
        pytest.param("https://atlassian.net", id="bare-domain"),
        pytest.param("https://jira.com", id="bare-jira-domain"),
        pytest.param("https://jira-dev.com", id="bare-staging-domain"),
        pytest.param("https://evilatlassian.net", id="suffix-without-dot"),
        pytest.param("https://evil.com/x.atlassian.net", id="host-in-path"),
        pytest.param("https://evil.com?x.atlassian.net", id="host-in-query"),
        pytest.param("https://evil.com#x.atlassian.net", id="host-in-fragment"),
        pytest.param("https://x.atlassian.net.evil.com", id="host-as-subdomain"),
        pytest.param("https://x.atlassian.net@evil.com", id="host-as-userinfo"),
        pytest.param("https://x.atlassian.net:pw@evil.com", id="host-as-user-with-password"),
        pytest.param("https://x.atlassian.net.", id="trailing-dot"),
        pytest.param("https://x_y.atlassian.net", id="underscore"),
        pytest.param("https://x%2eatlassian.net", id="percent-encoded-host"),
        pytest.param("https://x.atlassian.net\\@evil.com", id="backslash-userinfo"),
        pytest.param("https://bitbucket.org.evil.com", id="exact-host-as-prefix"),
        pytest.param("https://evilbitbucket.org", id="exact-host-as-suffix"),
        pytest.param("https://www.bitbucket.org", id="exact-host-subdomain"),
        pytest.param("https://", id="no-host"),
        pytest.param("", id="empty"),
        pytest.param("not a url", id="not-a-url"),
        pytest.param("https://[::1]", id="ipv6-not-allowed"),
        pytest.param("https://127.0.0.1", id="ip-not-allowed"),
    ],
)
def test_untrusted_base_urls_are_refused(base_url: str) -> None:
    assert ALL_ENVIRONMENTS.environment_of(base_url) is None


def test_userinfo_is_refused() -> None:
    """A product base URL never carries credentials; one that does is not trusted, whatever its host."""
    assert ALL_ENVIRONMENTS.environment_of("https://user@x.atlassian.net") is None
    assert ALL_ENVIRONMENTS.environment_of("https://user:pw@x.atlassian.net") is None
    assert ALL_ENVIRONMENTS.environment_of("https://x.atlassian.net@evil.com") is None


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://localhost", STAGING),
        ("http://localhost:2990/jira", STAGING),
        ("https://localhost", STAGING),
        ("http://LOCALHOST:8080", STAGING),
        ("http://a.example.test", STAGING),
        ("http://a.b.example.test", STAGING),
        ("https://product.example.test/wiki", STAGING),
        ("http://[::1]:8080", STAGING),
        ("http://example.test", None),
        ("http://evilexample.test", None),
        ("http://a.example.test.evil.com", None),
        ("http://localhost.evil.com", None),
        ("http://evil.com/localhost", None),
        ("ftp://localhost", None),
        ("http://example.atlassian.net", None),
        ("https://example.atlassian.net", PRODUCTION),
    ],
)
def test_extra_hosts(base_url: str, expected: ConnectEnvironment | None) -> None:
    """Extra hosts: exact names or `*.` patterns, plain http allowed, in their own environment."""
    hosts = ProductHosts.of(extra_hosts=["localhost", "*.Example.test", "::1"], extra_hosts_environment="staging")
    assert hosts.environment_of(base_url) is expected


def test_extra_hosts_default_to_production() -> None:
    hosts = ProductHosts.of(extra_hosts=["localhost"])
    assert hosts.extra_hosts_environment is PRODUCTION
    assert hosts.environment_of("http://localhost:8000") is PRODUCTION


def test_of_normalises_its_arguments() -> None:
    hosts = ProductHosts.of(environments=["production", "fedramp-staging"], extra_hosts=["LocalHost"])
    assert hosts.environments == frozenset({PRODUCTION, FEDRAMP_STAGING})
    assert hosts.extra_hosts == ("localhost",)


def test_unknown_environment_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="moon"):
        ProductHosts.of(environments=["moon"])
