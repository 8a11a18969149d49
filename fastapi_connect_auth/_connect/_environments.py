"""Atlassian's environments: which product hosts belong to each, and where its install keys live.

The product host of an install decides the environment, and so the key CDN, only
once it is on the allow-list: a tenant can never point us at a key server of its
choosing, nor register a base URL on an arbitrary host.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ConnectEnvironment", "ProductHosts"]


class ConnectEnvironment(str, enum.Enum):
    """An Atlassian cloud environment, with its own product hosts and install-keys CDN."""

    PRODUCTION = "production"
    """Atlassian Cloud: `*.atlassian.net`, `*.jira.com`, Bitbucket Cloud."""
    STAGING = "staging"
    """Atlassian's staging environment: `*.jira-dev.com`."""
    FEDRAMP = "fedramp"
    """Atlassian Government Cloud (FedRAMP Moderate): `*.atlassian-us-gov-mod.net`."""
    FEDRAMP_STAGING = "fedramp-staging"
    """Atlassian Government Cloud's staging environment: `*.atlassian-stg-fedm.net`."""


# Host suffixes (a leading dot: the bare domain itself is not a tenant) and exact hosts,
# as Atlassian's own framework (atlassian-connect-express 11.5) classifies them.
_SUFFIXES: dict[ConnectEnvironment, tuple[str, ...]] = {
    ConnectEnvironment.PRODUCTION: (".atlassian.net", ".jira.com"),
    ConnectEnvironment.STAGING: (".jira-dev.com",),
    ConnectEnvironment.FEDRAMP: (".atlassian-us-gov-mod.net",),
    ConnectEnvironment.FEDRAMP_STAGING: (".atlassian-stg-fedm.net",),
}
_EXACT: dict[ConnectEnvironment, tuple[str, ...]] = {
    ConnectEnvironment.PRODUCTION: ("bitbucket.org", "api.bitbucket.org"),
}

INSTALL_KEYS_URLS: dict[ConnectEnvironment, tuple[str, str]] = {
    ConnectEnvironment.PRODUCTION: (
        "https://asap-distribution.us-west-2.prod.atl-asap.net",
        "https://connect-install-keys.atlassian.com",
    ),
    ConnectEnvironment.STAGING: (
        "https://asap-distribution.us-west-2.staging.atl-asap.net",
        "https://cs-migrations--cdn.us-east-1.staging.public.atl-paas.net",
    ),
    ConnectEnvironment.FEDRAMP: (
        "https://asap-distribution.us-west-2.prod.atl-auth-us-gov-mod.net",
        "https://cs-migrations--fedrampcdn.us-east-1.prod.cdn.atlassian-us-gov-mod.com",
    ),
    ConnectEnvironment.FEDRAMP_STAGING: (
        "https://asap-distribution.us-west-2.staging.atl-auth-us-gov-mod.net",
        "https://cs-migrations--fedrampcdn.us-east-1.staging.cdn.atlassian-us-gov-mod.com",
    ),
}
"""Primary and fallback base URLs of each environment's install-keys CDN."""


@dataclass(frozen=True, slots=True)
class ProductHosts:
    """The allow-list of product hosts that may install the app.

    `environments` enables Atlassian's hosts of each environment (production only,
    by default). `extra_hosts` adds hosts of your own, such as a test product on
    `localhost`; they count as `extra_hosts_environment` and may use plain http.
    A pattern `*.example.com` matches one or more labels before `.example.com`.
    """

    environments: frozenset[ConnectEnvironment] = frozenset({ConnectEnvironment.PRODUCTION})
    """The environments whose Atlassian product hosts may install the app."""
    extra_hosts: tuple[str, ...] = ()
    """Hosts of your own (exact, or `*.example.com`) that may install the app."""
    extra_hosts_environment: ConnectEnvironment = ConnectEnvironment.PRODUCTION
    """The environment (and so the key CDN) that `extra_hosts` count as."""

    @classmethod
    def of(
        cls,
        environments: Iterable[ConnectEnvironment | str] = (ConnectEnvironment.PRODUCTION,),
        extra_hosts: Iterable[str] = (),
        extra_hosts_environment: ConnectEnvironment | str = ConnectEnvironment.PRODUCTION,
    ) -> ProductHosts:
        """Build the allow-list from plain values: environment names as strings are accepted."""
        return cls(
            frozenset(ConnectEnvironment(env) for env in environments),
            tuple(host.lower() for host in extra_hosts),
            ConnectEnvironment(extra_hosts_environment),
        )

    def frame_ancestors(self) -> str:
        """The allow-list as CSP sources, for `Content-Security-Policy: frame-ancestors` on the app's pages.

        Only an allowed product may frame them: no other site can load a page in
        an iframe and trick a user into clicking through it.
        """
        environments = [environment for environment in ConnectEnvironment if environment in self.environments]
        sources = [f"https://*{suffix}" for environment in environments for suffix in _SUFFIXES[environment]]
        sources += [f"https://{host}" for environment in environments for host in _EXACT.get(environment, ())]
        for pattern in self.extra_hosts:
            sources += [f"http://{pattern}:*", f"https://{pattern}:*"]
        return " ".join(dict.fromkeys(sources))

    def environment_of(self, base_url: str) -> ConnectEnvironment | None:
        """The environment of an allow-listed product `base_url`, else `None`."""
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        if parts.username is not None or not _HOST.fullmatch(host):
            return None
        if parts.scheme in ("http", "https") and any(_host_matches(host, p) for p in self.extra_hosts):
            return self.extra_hosts_environment
        if parts.scheme != "https":
            return None
        for environment in self.environments:
            if host in _EXACT.get(environment, ()) or host.endswith(_SUFFIXES[environment]):
                return environment
        return None


_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*|[0-9a-f:]+")


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern
