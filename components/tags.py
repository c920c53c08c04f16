"""AWS tags: the one place base tags and user tags are merged."""

from __future__ import annotations

from collections.abc import Mapping


def base_tags(project: str, stack: str) -> dict[str, str]:
    return {"simfleet:project": project, "simfleet:stack": stack, "managed-by": "pulumi"}


def merge_tags(base: Mapping[str, str], user: Mapping[str, str], name: str | None = None, **extra: str) -> dict[str, str]:
    """Base tags, then the stack's own tags, then resource-specific ones; `Name` last so it always wins."""
    merged = {**base, **user, **extra}
    if name is not None:
        merged["Name"] = name
    return merged
