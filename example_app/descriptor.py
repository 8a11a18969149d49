"""The app descriptor Jira reads at install time: `GET /atlassian-connect.json`."""

from __future__ import annotations

from typing import Any

from .settings import Settings


def connect_descriptor(settings: Settings, lifecycle: dict[str, str]) -> dict[str, Any]:
    """The descriptor; `lifecycle` is the lifecycle router's URLs (`LifecycleRouter.lifecycle_urls`)."""
    return {
        "key": settings.app_key,
        "name": "FastAPI Connect example",
        "description": "Keeps a verified inbox of Jira issue webhooks.",
        "baseUrl": settings.base_url,
        "authentication": {"type": "jwt"},
        "lifecycle": lifecycle,
        "apiMigrations": {"signed-install": True, "context-qsh": True, "gdpr": True},
        "scopes": ["READ", "ACT_AS_USER"],
        "modules": {
            "webhooks": [
                {"event": "jira:issue_created", "url": "/webhooks"},
                {"event": "jira:issue_updated", "url": "/webhooks"},
            ],
            "generalPages": [
                {
                    "key": "inbox",
                    "name": {"value": "Webhook inbox"},
                    "url": "/inbox",
                    "location": "system.top.navigation.bar",
                }
            ],
        },
    }
