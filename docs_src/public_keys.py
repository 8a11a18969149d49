"""Accept installs from production and staging tenants, and tune the install-key
cache."""

from __future__ import annotations

from fastapi_connect_auth import (
    AtlassianKeyProvider,
    ConnectAuth,
    ConnectEnvironment,
    Credentials,
    ProductHosts,
)


def load_tenant(client_key: str) -> Credentials[None] | None:
    return None  # your database lookup


connect = ConnectAuth(
    base_url="https://my-app.example.com",
    credentials_loader=load_tenant,
    # *.atlassian.net, *.jira.com, bitbucket.org (production) and *.jira-dev.com
    # (staging) may install the app.
    product_hosts=ProductHosts.of(
        environments=[ConnectEnvironment.PRODUCTION, ConnectEnvironment.STAGING]
    ),
    key_provider=AtlassianKeyProvider(
        timeout=3.0,  # per CDN host; the fallback host is tried next
        cache_ttl=6 * 3600,  # keys do not change under a kid: keep them for hours
        cache_size=256,
        failure_ttl=5.0,  # remember an outage briefly instead of hammering the CDN
    ),
)
