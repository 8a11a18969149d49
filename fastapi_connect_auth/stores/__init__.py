"""Stores for Connect tenants, Forge installations, Forge tokens and delivery ids, with the library's rules.

```python
from fastapi_connect_auth import ConnectAuth, lifecycle_router
from fastapi_connect_auth.stores import MemoryStore

store = MemoryStore()
connect = ConnectAuth(base_url="https://my-app.example.com", store=store)
app.include_router(lifecycle_router(connect, store))
```

* `MemoryStore`: this process only (tests, demos).
* `fastapi_connect_auth.stores.sqlalchemy.SQLAlchemyStore` (extra `[sqlalchemy]`):
  SQLite (aiosqlite) or PostgreSQL (asyncpg), with its `metadata` and Alembic migrations.
* `fastapi_connect_auth.stores.redis.RedisStore` (extra `[redis]`): redis-py's asyncio client.

Each backend module is imported only when asked for: `import fastapi_connect_auth`
imports neither SQLAlchemy nor redis. Write your own by subclassing `BaseStore`;
`fastapi_connect_auth.testing.StoreContract` checks it.
"""

from ._base import BaseStore, CacheStats, lifecycle_order, link_connect_tenant, outranks, reinstalled
from ._batching import Batcher
from ._linking import DEFAULT_LINK_BACKOFF, ConnectLinker, LinkAttempt, LinkRun
from ._memory import MemoryStore
from ._readiness import ReadinessReport, UnlinkedTenant, UnreachedInstallation, readiness_report
from ._records import (
    ConnectLink,
    ForgeInstallationRecord,
    InstallationState,
    LinkOutcome,
    LinkSource,
    Product,
    Tenant,
)
from ._secrets import SecretCipher, SecretDecryptionError

__all__ = [
    "DEFAULT_LINK_BACKOFF",
    "BaseStore",
    "Batcher",
    "CacheStats",
    "ConnectLink",
    "ConnectLinker",
    "ForgeInstallationRecord",
    "InstallationState",
    "LinkAttempt",
    "LinkOutcome",
    "LinkRun",
    "LinkSource",
    "MemoryStore",
    "Product",
    "ReadinessReport",
    "SecretCipher",
    "SecretDecryptionError",
    "Tenant",
    "UnlinkedTenant",
    "UnreachedInstallation",
    "lifecycle_order",
    "link_connect_tenant",
    "outranks",
    "readiness_report",
    "reinstalled",
]
