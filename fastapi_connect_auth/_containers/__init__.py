"""Forge Containers: a FastAPI service on Atlassian's infrastructure, trusted through its sidecar.

The container sees no token: the sidecar authenticates each invocation and passes
`x-forge-invocation-id`; the container asks the sidecar who is calling
(`GET $FORGE_EGRESS_PROXY_URL/invocation/context`) and calls products through the
same egress proxy (`forge-proxy-authorization: Forge as=app|user,id=<invocation id>`).
"""
