"""What differs between the products the test kit fakes: Jira, Confluence and Bitbucket Cloud.

Each profile holds a product's default base URL, whether it signs installs with
its RSA key (Bitbucket Cloud does not: its installs are HS256, the legacy way),
extra install fields, and the body of a webhook as that product sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DEFAULT_ACCOUNT_ID", "ProductType", "profile_of"]

ProductType = Literal["jira", "confluence", "bitbucket"]
"""The products the kit can fake: the `productType` of their install payloads."""

DEFAULT_ACCOUNT_ID = "5b10ac8d82e05b22cc7d4ef5"
"""The user a fake product acts for unless told otherwise (an Atlassian account id)."""

WebhookBody = Callable[[str, int, str], dict[str, Any]]
"""`(event, timestamp in milliseconds, account id)` to a webhook body."""


def _jira_webhook(event: str, timestamp: int, account_id: str) -> dict[str, Any]:
    """An issue event, as Jira sends `jira:issue_created` and its kin."""
    return {
        "timestamp": timestamp,
        "webhookEvent": event,
        "user": {"accountId": account_id},
        "issue": {"id": "10001", "key": "DEMO-1", "fields": {"summary": "A fake issue"}},
    }


def _confluence_webhook(event: str, timestamp: int, account_id: str) -> dict[str, Any]:
    """A page event, as Confluence sends `page_created` and its kin (the body does not name the event)."""
    return {
        "timestamp": timestamp,
        "userAccountId": account_id,
        "page": {
            "id": "98311",
            "title": "A fake page",
            "spaceKey": "DOC",
            "creatorAccountId": account_id,
            "lastModifierAccountId": account_id,
            "creationDate": timestamp,
            "modificationDate": timestamp,
            "contentType": "page",
            "version": 1,
        },
    }


def _bitbucket_webhook(event: str, timestamp: int, account_id: str) -> dict[str, Any]:
    """A repository event, as Bitbucket Cloud sends `repo:push` and its kin: the actor and the repository."""
    return {
        "actor": {"type": "user", "account_id": account_id, "display_name": "Fake User"},
        "repository": {
            "type": "repository",
            "name": "fake-repo",
            "full_name": "fake-workspace/fake-repo",
            "uuid": "{5c4e8cd9-3e3e-4c6b-9b0a-6b8f0c5e2a11}",
            "workspace": {"type": "workspace", "slug": "fake-workspace"},
        },
    }


@dataclass(frozen=True)
class _Profile:
    name: str
    base_url: str
    signs_installs: bool
    webhook_body: WebhookBody
    payload_fields: Mapping[str, Any] = field(default_factory=dict)


_SERVER_FIELDS = {"serverVersion": "100285", "pluginsVersion": "1001.0.0-SNAPSHOT"}

_PROFILES: dict[str, _Profile] = {
    "jira": _Profile("Jira", "https://fake-jira.atlassian.net", True, _jira_webhook, _SERVER_FIELDS),
    "confluence": _Profile(
        "Confluence", "https://fake-confluence.atlassian.net/wiki", True, _confluence_webhook, _SERVER_FIELDS
    ),
    "bitbucket": _Profile(
        "Bitbucket Cloud",
        "https://api.bitbucket.org",
        False,
        _bitbucket_webhook,
        {"principal": {"type": "team", "username": "fake-workspace"}, "baseApiUrl": "https://api.bitbucket.org"},
    ),
}


def profile_of(product_type: str) -> _Profile:
    """The profile of `product_type`; any other product is an error rather than a Jira in disguise."""
    try:
        return _PROFILES[product_type]
    except KeyError:
        raise ValueError(f"product_type must be one of {sorted(_PROFILES)}, not {product_type!r}") from None
