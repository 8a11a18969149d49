"""Forge Remote: the calls Forge makes to a remote backend, each with a Forge Invocation Token (FIT).

* `_flow`: `ForgeAuth`, the configuration, and `verify_invocation`, its framework-free flow;
* `_models`: the FIT's claims and the verified `ForgeInvocation`;
* `_dependencies`: `ForgeRequest`, the FastAPI dependency;
* `_jwks`: Forge's signing keys, fetched as JSON Web Key Sets and cached.

The package imports only the shared core above it, never `_connect`.
"""
