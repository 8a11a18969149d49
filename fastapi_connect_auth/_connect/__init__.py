"""Atlassian Connect: the calls a product makes to a Connect app, and how each is verified.

* `_flow`: `ConnectAuth`, the configuration, and its framework-free flows
  (`verify_installation`, `verify_lifecycle`, `verify_request`);
* `_tokens`: a Connect JWT parsed once into claims, and its HS256/RS256 signature check;
* `_qsh`: the canonical request and its hash;
* `_models`: claims, lifecycle payloads, stored credentials and verified results;
* `_dependencies`: the FastAPI dependencies that adapt a request to the flows;
* `_environments`, `_keys`: the product hosts that may install the app, and Atlassian's install keys.

The package imports only the shared core above it (`_tokens`, `_errors`, `_bodies`, `_openapi`, `_wiring`).
"""
