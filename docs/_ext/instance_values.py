"""A griffe extension for the API reference: instance attributes are shown without the value `__init__` computes.

`self.leeway = leeway` or `self.model = APIKey(..., description=description or _DESCRIPTION)`
would otherwise render as the attribute's value: the constructor's own code, private names
included, and no default a user can rely on (the class signature shows those). Class-level
values (constants, enum members, dataclass fields' defaults) are kept.
"""

from __future__ import annotations

from typing import Any

import griffe


class InstanceValues(griffe.Extension):
    """Drop the value of every attribute assigned in a method (`self.name = ...`)."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, agent: Any = None, **kwargs: Any) -> None:
        current = getattr(agent, "current", None)  # what is being visited: the method, for `self.name = ...`
        if isinstance(current, griffe.Function):
            attr.value = None
