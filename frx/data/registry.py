"""The data set registry: each loader's module registers a `DataSpec` at its end, with
``register(DataSpec(...))``; `frx.data.load`, `frx-data list` and `frx-data import` read it."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import registry


@dataclass(frozen=True)
class DataSpec:
    """A data set loader: the value of a dataset config's ``source``.

    load(cfg) -> Splits; describe(root) -> {entry: description} of what of it a data root holds.
    import_files(src, root, force, ...) copies a local copy into a data root (`frx-data import`,
    which passes the options the function takes), writing to where(root); notes(root, its result) are
    lines printed after an import. None: the data set is not imported (it ships with a package)."""

    name: str
    load: Callable[[Any], Any]
    describe: Callable[[Any], dict[str, str]]
    import_files: Callable[..., dict] | None = None
    where: Callable[[Any], Path] | None = None
    notes: Callable[[Any, dict], list[str]] | None = None

    def import_options(self) -> set[str]:
        return set(inspect.signature(self.import_files).parameters) - {"src", "root"}


_REGISTRY: dict[str, DataSpec] = {}  # in registration order: `frx-data list` and `import` show it so


def register(spec: DataSpec) -> DataSpec:
    registry.add(_REGISTRY, spec.name, spec, "data set")
    return spec


def names() -> list[str]:
    """The data set loaders (values of a dataset config's ``source``)."""
    return sorted(_REGISTRY)


def specs() -> list[DataSpec]:
    return list(_REGISTRY.values())


def spec(name: str) -> DataSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]
