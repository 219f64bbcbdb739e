"""What the registries of models, tasks and data sets share: each name is registered once."""

from __future__ import annotations

from typing import Any


def add(registry: dict[str, Any], name: str, entry: Any, what: str) -> None:
    """registry[name] = entry, refused when `name` is there already (two modules claiming one name)."""
    if name in registry:
        raise ValueError(f"{what} {name!r} is registered twice")
    registry[name] = entry
