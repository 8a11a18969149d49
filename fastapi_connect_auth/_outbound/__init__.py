"""Calling a tenant's Jira or Confluence REST API: as the app, as a user, and tokens for the app's own pages.

```python
async with product_client(app_key="my-app", client_key=key, base_url=url, shared_secret=secret) as jira:
    me = (await jira.get("/rest/api/3/myself")).json()
```

* `ConnectAppAuth` signs each request with a short-lived HS256 JWT whose `qsh`
  covers the request's method, path (relative to the tenant's base URL) and
  query, computed by `fastapi_connect_auth._qsh` like inbound verification.
* `ConnectUserAuth` sends `Authorization: Bearer <token>` with an access token
  from the OAuth 2.0 JWT bearer grant (user impersonation), which a shared
  `UserTokenProvider` fetches once per tenant, user and scopes and caches.
* `context_token()` makes the context token an app hands to its own iframe.

Credentials never leave the tenant: a request whose scheme, host and port are
not the tenant's base URL's is refused before it is sent, and so is any base
URL on plain http other than localhost. Both auths follow same-origin redirects
themselves, signing each hop afresh, and refuse to follow a redirect to another
origin or from https to http (atlassian-connect-express leaked credentials that
way: CVE-2023-28155). Keep `follow_redirects=False` (httpx2's default) on the
client: with it on, httpx2 would follow redirects with the first hop's token.

Exception tree:

```
Exception
└── ProductAPIError            a call to a product's REST API could not be made
    ├── UnsafeRequestError     refused before sending: credentials would reach another host or plain http
    │   └── UnsafeRedirectError   the product redirected to another origin, or from https to http
    ├── TokenRequestError      the authorization server did not issue a user's access token
    └── RateLimitedError       the product still answered 429 when no retry was left
```

Every client retries as Atlassian asks (`RetryPolicy`): 429, 503, 408 and
timeouts for idempotent methods, `Retry-After` honoured, exponential backoff with
jitter, each attempt signed afresh, an hourly quota never retried.
`RateLimitInfo` reads the rate-limit headers; `IssueWrites` serialises the
writes to each Jira issue.

No message contains a token, an assertion or a shared secret.
"""

from ._app_auth import ConnectAppAuth, context_token
from ._clients import product_client, sync_product_client
from ._connect_property import CONNECT_CLIENT_KEY_PROPERTY
from ._errors import ProductAPIError, TokenRequestError, UnsafeRedirectError, UnsafeRequestError
from ._forge import (
    FORGE_GRAPHQL_URL,
    FORGE_GRAPHQL_URLS,
    FORGE_TOKEN_MAX_LIFETIME,
    ForgeBearerAuth,
    ForgeStoredToken,
    ForgeTokenStore,
    InMemoryForgeTokenStore,
    OfflineUserTokens,
    forge_product_client,
    remember_forge_tokens,
    stored_forge_client,
)
from ._installation_details import (
    InstallationContextRef,
    InstallationDetails,
    InstallationDetailsClient,
    InstallationDetailsError,
    InstallationPermissions,
    installation_is_live,
)
from ._issue_writes import IssueWrites
from ._paths import api_path
from ._retries import RateLimitedError, RateLimitInfo, RetryPolicy
from ._user_auth import (
    AUTHORIZATION_SERVERS,
    JWT_BEARER_GRANT_TYPE,
    ConnectUserAuth,
    UserGrant,
    UserTokenProvider,
    authorization_server_for,
)

__all__ = [
    "AUTHORIZATION_SERVERS",
    "CONNECT_CLIENT_KEY_PROPERTY",
    "FORGE_GRAPHQL_URL",
    "FORGE_GRAPHQL_URLS",
    "FORGE_TOKEN_MAX_LIFETIME",
    "JWT_BEARER_GRANT_TYPE",
    "ConnectAppAuth",
    "ConnectUserAuth",
    "ForgeBearerAuth",
    "ForgeStoredToken",
    "ForgeTokenStore",
    "InMemoryForgeTokenStore",
    "InstallationContextRef",
    "InstallationDetails",
    "InstallationDetailsClient",
    "InstallationDetailsError",
    "InstallationPermissions",
    "IssueWrites",
    "OfflineUserTokens",
    "ProductAPIError",
    "RateLimitInfo",
    "RateLimitedError",
    "RetryPolicy",
    "TokenRequestError",
    "UnsafeRedirectError",
    "UnsafeRequestError",
    "UserGrant",
    "UserTokenProvider",
    "api_path",
    "authorization_server_for",
    "context_token",
    "forge_product_client",
    "installation_is_live",
    "product_client",
    "remember_forge_tokens",
    "stored_forge_client",
    "sync_product_client",
]
