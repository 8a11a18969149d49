"""`RedisStore`: the library's store on redis-py's asyncio client (extra `fastapi-connect-auth[redis]`).

Every key starts with the store's `prefix` (one per app sharing a Redis). Writes
that read first (the later signed install wins, the latest received token wins, a
token or a delivery id is dropped only if it is still the one kept) are Lua scripts, atomic in
Redis. Expiring values get their expiry in the command that writes them:
delivery ids with `SET … NX PXAT … GET`, tokens with `SET … PXAT`. A token read
and a delivery check are each one round trip. Needs Redis 7.0 or later.

Shared secrets and tokens are encrypted (`SecretCipher`) before they reach Redis.
Redis being down answers `STORE_UNAVAILABLE` (503): the product retries, no
install is lost. Single-node Redis (or Sentinel); keys are not hash-tagged for Cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._outbound._forge import ForgeStoredToken
from ._base import BaseStore
from ._records import ConnectLink, ForgeInstallationRecord, Tenant, installation_values, link_values
from ._secrets import CipherSource, Encrypting

__all__ = ["RedisStore"]

_OUTRANKED = """
local function outranked(key, signed_at, rank)
  local kept = redis.call('HGET', key, 'signed_at')
  if not kept then return false end
  local kept_rank = tonumber(redis.call('HGET', key, 'signed_rank') or '0')
  return tonumber(kept) > signed_at or (tonumber(kept) == signed_at and kept_rank > rank)
end
"""
_PUT_TENANT = (
    _OUTRANKED
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[10] == '1' or outranked(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[9])) then return 0 end
end
local old_installation = redis.call('HGET', KEYS[1], 'installation_id')
local old_cloud = redis.call('HGET', KEYS[1], 'cloud_id')
if old_installation and old_installation ~= '' then redis.call('SREM', ARGV[5] .. old_installation, ARGV[4]) end
if old_cloud and old_cloud ~= '' then redis.call('SREM', ARGV[6] .. old_cloud, ARGV[4]) end
redis.call('HDEL', KEYS[1], 'installed')
if tonumber(redis.call('HGET', KEYS[1], 'enabled_at') or '0') <= tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[1], 'enabled')
  redis.call('HSET', KEYS[1], 'enabled_at', ARGV[11])
end
redis.call('HSETNX', KEYS[1], 'installed_at', ARGV[8])
redis.call('HSET', KEYS[1], 'signed_at', ARGV[1], 'signed_rank', ARGV[9], 'record', ARGV[7])
redis.call('HSET', KEYS[1], 'installation_id', ARGV[2], 'cloud_id', ARGV[3])
if ARGV[2] ~= '' then redis.call('SADD', ARGV[5] .. ARGV[2], ARGV[4]) end
if ARGV[3] ~= '' then redis.call('SADD', ARGV[6] .. ARGV[3], ARGV[4]) end
return 1
"""
)
_UNINSTALL_TENANT = (
    _OUTRANKED
    + """
if redis.call('EXISTS', KEYS[1]) == 0 or outranked(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])) then return 0 end
redis.call('HSET', KEYS[1], 'signed_at', ARGV[1], 'signed_rank', ARGV[2], 'installed', 'false', 'uninstalled_at', ARGV[3])
return 1
"""
)
_ENABLE_TENANT = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'installed') == 'false' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'enabled_at') or '0') > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'enabled', ARGV[1], 'enabled_at', ARGV[2])
return 1
"""
_PUT_INSTALLATION = """
local kept = redis.call('GET', KEYS[1])
if kept and cjson.decode(kept)['state'] == 'uninstalled' then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
_KEEP_LATEST = """
local kept = redis.call('GET', KEYS[1])
if kept then
  local received = tonumber(string.match(kept, '^([^|]*)|'))
  if received and received > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PXAT', ARGV[3])
return 1
"""
_FORGET_IF_SAME = """
local kept = redis.call('GET', KEYS[1])
if kept and string.find(kept, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"""
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REPLACE = """
if redis.call('HGET', KEYS[1], 'record') == ARGV[1] then return redis.call('HSET', KEYS[1], 'record', ARGV[2]) * 0 + 1 end
return 0
"""
_REPLACE_VALUE = """
local ttl = redis.call('PTTL', KEYS[1])
if redis.call('GET', KEYS[1]) == ARGV[1] and ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl) return 1 end
return 0
"""
_CLAIM_LINK = """
if redis.call('HGET', KEYS[1], 'verified') == '1' then return 0 end
local due = tonumber(redis.call('HGET', KEYS[1], 'next_attempt_at') or '0')
if due > tonumber(ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[2])
return 1
"""
_PUT_LINK = """
if ARGV[1] ~= '1' and redis.call('HGET', KEYS[1], 'verified') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'verified', ARGV[1], 'link', ARGV[2], 'next_attempt_at', ARGV[3])
redis.call('HSETNX', KEYS[1], 'attempts', ARGV[4])
return 1
"""
_MUTABLE = ("installed", "enabled", "uninstalled_at", "installed_at", "signed_rank", "enabled_at")


class RedisStore(BaseStore, Encrypting):
    """The library's store in Redis.

    ```python
    store = RedisStore("redis://localhost:6379/0", cipher=SecretCipher([key]), prefix="my-app")
    ```

    * `redis`: a URL (`redis://`, `rediss://`, `unix://`) or your own
      `redis.asyncio.Redis` (then yours to close).
    * `cipher`: the keys shared secrets and tokens are encrypted with (a
      `SecretCipher`, or a function making one at first use).
    * `prefix`: the start of every key (one per app on a shared Redis).
    * Options as for `BaseStore` (`cache_ttl`, …).
    """

    faults: ClassVar[tuple[type[BaseException], ...]] = (RedisError, OSError, asyncio.TimeoutError)
    """redis-py's errors (connection refused, timeouts, a server that refused a command)."""

    def __init__(
        self, redis: str | Redis, *, cipher: CipherSource, prefix: str = "connect-auth", **options: Any
    ) -> None:
        BaseStore.__init__(self, **options)
        Encrypting.__init__(self, cipher)
        if not prefix or ":" in prefix or not prefix.isprintable():
            raise ValueError("prefix must be a non-empty printable name without ':'")
        self._owns_client = isinstance(redis, str)
        self.redis: Redis = Redis.from_url(redis) if isinstance(redis, str) else redis
        """The redis-py client."""
        self.prefix = prefix
        """The start of every key this store writes."""
        self._put_tenant_script = self.redis.register_script(_PUT_TENANT)
        self._uninstall_tenant_script = self.redis.register_script(_UNINSTALL_TENANT)
        self._enable_tenant_script = self.redis.register_script(_ENABLE_TENANT)
        self._put_installation_script = self.redis.register_script(_PUT_INSTALLATION)
        self._put_token_script = self.redis.register_script(_KEEP_LATEST)
        self._discard_token_script = self.redis.register_script(_FORGET_IF_SAME)
        self._replace_script = self.redis.register_script(_REPLACE)
        self._forget_delivery_script = self.redis.register_script(_DELETE_IF_EQUAL)
        self._replace_value_script = self.redis.register_script(_REPLACE_VALUE)
        self._claim_link_script = self.redis.register_script(_CLAIM_LINK)
        self._put_link_script = self.redis.register_script(_PUT_LINK)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    async def close(self) -> None:
        """Close the client, if the store made it."""
        if self._owns_client:
            await self.redis.aclose()

    def _key(self, kind: str, *parts: str) -> str:
        """`prefix:kind:<parts>`; ids may hold `:` (ARIs), so several parts are one JSON list."""
        return f"{self.prefix}:{kind}:{parts[0] if len(parts) == 1 else json.dumps(parts)}"

    # -- tenants -------------------------------------------------------------------------------

    def _tenant(self, raw: Mapping[Any, Any], *, decrypt: bool = True) -> Tenant:
        fields = {_text(name): _text(value) for name, value in raw.items()}
        record = json.loads(fields["record"])
        encrypted = record.pop("encrypted_shared_secret")
        secret = self.cipher.decrypt(encrypted.encode()) if decrypt else ""
        for name in _MUTABLE:
            if name in fields:
                record[name] = json.loads(fields[name])
        return Tenant(shared_secret=secret, signed_at=float(fields["signed_at"]), **record)

    async def _get_tenant(self, client_key: str) -> Tenant | None:
        fields = await self.redis.hgetall(self._key("tenant", client_key))
        return self._tenant(fields) if fields else None

    async def _get_tenants(self, client_keys: Sequence[str]) -> Mapping[str, Tenant]:
        """The tenants of `client_keys` in one round trip (a pipeline)."""
        async with self.redis.pipeline(transaction=False) as pipeline:
            for client_key in client_keys:
                pipeline.hgetall(self._key("tenant", client_key))
            found = await pipeline.execute()
        return {key: self._tenant(fields) for key, fields in zip(client_keys, found, strict=True) if fields}

    async def _put_tenant(self, tenant: Tenant, *, create_only: bool = False) -> bool:
        record = {
            "client_key": tenant.client_key,
            "base_url": tenant.base_url,
            "encrypted_shared_secret": self.cipher.encrypt(tenant.shared_secret).decode(),
            "product_type": tenant.product_type,
            "installation_id": tenant.installation_id,
            "cloud_id": tenant.cloud_id,
            "oauth_client_id": tenant.oauth_client_id,
            "payload": dict(tenant.payload),
            "installed": tenant.installed,
            "enabled": tenant.enabled,
        }
        key = self._key("tenant", tenant.client_key)
        arguments = [
            repr(tenant.signed_at),
            tenant.installation_id or "",
            tenant.cloud_id or "",
            tenant.client_key,
            f"{self.prefix}:by-installation:",
            f"{self.prefix}:by-cloud:",
            json.dumps(record),
            json.dumps(tenant.installed_at),
            str(tenant.signed_rank),
            "1" if create_only else "",
            repr(tenant.enabled_at),
        ]
        return bool(await self._put_tenant_script(keys=[key], args=arguments))

    async def _uninstall_tenant(self, client_key: str, signed_at: float, rank: int, now: float) -> bool:
        arguments = [repr(signed_at), str(rank), json.dumps(now)]
        return bool(await self._uninstall_tenant_script(keys=[self._key("tenant", client_key)], args=arguments))

    async def _enable_tenant(self, client_key: str, enabled: bool, signed_at: float) -> bool:
        arguments = [json.dumps(enabled), repr(signed_at)]
        return bool(await self._enable_tenant_script(keys=[self._key("tenant", client_key)], args=arguments))

    async def _find_tenants(self, installation_id: str, cloud_id: str | None) -> list[Tenant]:
        sets = [f"{self.prefix}:by-installation:{installation_id}"]
        if cloud_id is not None:
            sets.append(f"{self.prefix}:by-cloud:{cloud_id}")
        client_keys = sorted(_text(key) for key in await self.redis.sunion(sets))
        return list((await self._get_tenants(client_keys)).values())

    async def _rotate(self) -> int:
        """Re-encrypt every secret and token with the first key (each key atomically: a concurrent write wins)."""
        rotated = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}:tenant:*", count=500):
            raw = await self.redis.hget(key, "record")
            if raw is None:
                continue
            record = json.loads(raw)
            record["encrypted_shared_secret"] = self.cipher.rotate(record["encrypted_shared_secret"].encode()).decode()
            rotated += int(await self._replace_script(keys=[key], args=[raw, json.dumps(record)]))
        async for key in self.redis.scan_iter(match=f"{self.prefix}:token:*", count=500):
            value = await self.redis.get(key)
            if value is None:
                continue
            received, _, stored = _text(value).partition("|")
            entry = json.loads(stored)
            entry["token"] = self.cipher.rotate(entry["token"].encode()).decode()
            rotated += int(
                await self._replace_value_script(keys=[key], args=[value, f"{received}|{json.dumps(entry)}"])
            )
        return rotated

    # -- Forge installations --------------------------------------------------------------------

    async def _get_installation(self, installation_id: str) -> ForgeInstallationRecord | None:
        raw = await self.redis.get(self._key("installation", installation_id))
        if raw is None:
            return None
        record = json.loads(raw)
        return ForgeInstallationRecord(**{**record, "contexts": tuple(record["contexts"])})

    async def _put_installation(self, record: ForgeInstallationRecord) -> bool:
        value = json.dumps(installation_values(record))
        key = self._key("installation", record.installation_id)
        return bool(await self._put_installation_script(keys=[key], args=[value]))

    # -- Forge tokens: `received_at|{"token": <encrypted>, "hash", "api_base_url", "expires_at"}` ----------

    async def _get_token(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        value = await self.redis.get(self._key("token", installation_id, account_id or ""))
        if value is None:
            return None
        received, _, stored = _text(value).partition("|")
        entry = json.loads(stored)
        token = self.cipher.decrypt(entry["token"].encode())
        return ForgeStoredToken(token, entry["api_base_url"], entry["expires_at"], float(received))

    async def _put_token(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        entry = {
            "token": self.cipher.encrypt(token.token).decode(),
            "hash": _digest(token.token),
            "api_base_url": token.api_base_url,
            "expires_at": token.expires_at,
        }
        key = self._key("token", installation_id, account_id or "")
        expires_ms = int(token.expires_at * 1000)
        await self._put_token_script(keys=[key], args=[repr(token.received_at), json.dumps(entry), expires_ms])

    async def _discard_token(self, installation_id: str, account_id: str | None, token: str) -> None:
        marker = f'"hash": "{_digest(token)}"'
        await self._discard_token_script(keys=[self._key("token", installation_id, account_id or "")], args=[marker])

    # -- delivery ids -------------------------------------------------------------------------------

    async def _remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        kept = await self.redis.set(
            self._key("delivery", key), fingerprint, nx=True, pxat=max(int(expires_at * 1000), 1), get=True
        )
        return _text(kept) if isinstance(kept, bytes | str) else None

    async def _forget_delivery(self, key: str, fingerprint: str) -> bool:
        return bool(await self._forget_delivery_script(keys=[self._key("delivery", key)], args=[fingerprint]))

    # -- Connect links: a hash of `verified`, `link` (JSON), `attempts`, `next_attempt_at` ----------------

    async def _get_link(self, installation_id: str) -> ConnectLink | None:
        fields = await self.redis.hgetall(self._key("connect-link", installation_id))
        return _link(installation_id, fields) if fields else None

    async def _claim_link(self, installation_id: str, now: float, until: float) -> bool:
        key = self._key("connect-link", installation_id)
        return bool(await self._claim_link_script(keys=[key], args=[repr(now), repr(until)]))

    async def _put_link(self, link: ConnectLink) -> None:
        described = json.dumps(link_values(link))
        arguments = ["1" if link.verified else "0", described, repr(link.next_attempt_at), link.attempts]
        await self._put_link_script(keys=[self._key("connect-link", link.installation_id)], args=arguments)

    async def _list_links(self) -> list[ConnectLink]:
        prefix = f"{self.prefix}:connect-link:"
        found = []
        async for key in self.redis.scan_iter(match=f"{prefix}*", count=500):
            fields = await self.redis.hgetall(key)
            if fields:
                found.append(_link(_text(key).removeprefix(prefix), fields))
        return found

    async def _list_tenants(self) -> list[Tenant]:
        found = []
        async for key in self.redis.scan_iter(match=f"{self.prefix}:tenant:*", count=500):
            fields = await self.redis.hgetall(key)
            if fields:
                found.append(self._tenant(fields, decrypt=False))
        return found

    async def _list_installations(self) -> list[ForgeInstallationRecord]:
        found = []
        async for key in self.redis.scan_iter(match=f"{self.prefix}:installation:*", count=500):
            record = await self._get_installation(_text(key).removeprefix(f"{self.prefix}:installation:"))
            if record is not None:
                found.append(record)
        return found


def _link(installation_id: str, raw: Mapping[Any, Any]) -> ConnectLink:
    fields = {_text(name): _text(value) for name, value in raw.items()}
    described = json.loads(fields.get("link", "{}"))
    return ConnectLink(
        installation_id=installation_id,
        attempts=int(fields.get("attempts", 0)),
        next_attempt_at=float(fields.get("next_attempt_at", 0)),
        **described,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
