"""`ContainerSettings`: what Forge gives a container in its environment, checked once at startup.

Every problem is named in one `ValueError`, so a container that would refuse
every call (or send invocation ids somewhere other than its sidecar) does not start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ContainerSettings"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Where the sidecar listens: Forge documents `FORGE_EGRESS_PROXY_URL` as plain http on the loopback."""
_ID = r"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"  # a UUID in Forge's docs; only ever compared, never sent
_APP_ARI = re.compile(rf"ari:cloud:ecosystem::app/{_ID}")
_ENV_ARI = re.compile(rf"ari:cloud:ecosystem::environment/{_ID}/{_ID}")
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _proxy_url(value: str, problems: list[str]) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        problems.append("FORGE_EGRESS_PROXY_URL is not a URL")
        return value
    if (
        parts.scheme != "http"
        or parts.hostname not in LOOPBACK_HOSTS
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        problems.append("FORGE_EGRESS_PROXY_URL must be http://localhost:<port> (the sidecar, on the loopback)")
        return value
    host = f"[{parts.hostname}]" if parts.hostname == "::1" else parts.hostname
    return f"http://{host}" + (f":{port}" if port else "")


@dataclass(frozen=True)
class ContainerSettings:
    """The container's configuration, as Forge sets it in the environment (`ContainerSettings.from_env()`).

    * `egress_proxy_url` (`FORGE_EGRESS_PROXY_URL`): the sidecar, plain http on the
      loopback (`http://localhost:7072`); anything else is refused, since every
      invocation id is sent there.
    * `app_ari` (`FORGE_APP_ARI`) and `env_ari` (`FORGE_ENV_ARI`): every invocation's
      context must name this app and this environment (`CONTEXT_MISMATCH` otherwise).
    * `server_port` (`SERVER_PORT`, 8080 by default): where the container listens.
    * `service_key` (`FORGE_SERVICE_KEY`) and `container_key` (`FORGE_CONTAINER_KEY`): for logs.
    """

    egress_proxy_url: str
    """The sidecar's base URL, normalised to `http://host[:port]`."""
    app_ari: str
    """The app's ARI, `ari:cloud:ecosystem::app/<uuid>`."""
    env_ari: str
    """The environment's ARI, `ari:cloud:ecosystem::environment/<app uuid>/<env uuid>`."""
    server_port: int = 8080
    """The port the container listens on."""
    service_key: str | None = None
    """The manifest's service key."""
    container_key: str | None = None
    """The manifest's container key."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        object.__setattr__(self, "egress_proxy_url", _proxy_url(self.egress_proxy_url, problems))
        app = _APP_ARI.fullmatch(self.app_ari)
        if app is None:
            problems.append("FORGE_APP_ARI must be ari:cloud:ecosystem::app/<uuid>")
        env = _ENV_ARI.fullmatch(self.env_ari)
        if env is None:
            problems.append("FORGE_ENV_ARI must be ari:cloud:ecosystem::environment/<app uuid>/<env uuid>")
        elif app is not None and env[1] != app[1]:
            problems.append("FORGE_ENV_ARI is an environment of another app than FORGE_APP_ARI")
        if isinstance(self.server_port, bool) or not 0 < self.server_port < 65536:
            problems.append("SERVER_PORT must be a port number (1-65535)")
        for name, key in (("FORGE_SERVICE_KEY", self.service_key), ("FORGE_CONTAINER_KEY", self.container_key)):
            if key is not None and not _KEY.fullmatch(key):
                problems.append(f"{name} must be a manifest key (letters, digits, - and _)")
        if problems:
            raise ValueError("Forge Containers configuration: " + "; ".join(problems) + ".")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContainerSettings:
        """The settings from `environ` (`os.environ` by default); one `ValueError` naming every problem."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("FORGE_EGRESS_PROXY_URL", "FORGE_APP_ARI", "FORGE_ENV_ARI") if not env.get(name)]
        port = env.get("SERVER_PORT") or "8080"
        if missing or not port.isdigit():
            problems = [f"{name} is not set" for name in missing]
            problems += [] if port.isdigit() else ["SERVER_PORT must be a port number (1-65535)"]
            raise ValueError("Forge Containers configuration: " + "; ".join(problems) + ".")
        return cls(
            egress_proxy_url=env["FORGE_EGRESS_PROXY_URL"],
            app_ari=env["FORGE_APP_ARI"],
            env_ari=env["FORGE_ENV_ARI"],
            server_port=int(port),
            service_key=env.get("FORGE_SERVICE_KEY") or None,
            container_key=env.get("FORGE_CONTAINER_KEY") or None,
        )
