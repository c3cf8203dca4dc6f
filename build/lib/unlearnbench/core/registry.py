"""One generic registry for datasets, models, methods, attacks and metrics.

Third-party packages plug in through entry-point groups named ``unlearnbench.<kind>``; they are
loaded lazily the first time a registry is queried, so importing the package stays cheap.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from unlearnbench.core.errors import UnknownNameError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object plus free-form metadata (summary, sets read, direction, ...)."""

    name: str
    obj: T
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        if "summary" in self.info:
            return str(self.info["summary"])
        doc = getattr(self.obj, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name → object mapping with decorator registration and helpful lookup errors."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.singular = kind[:-1] if kind.endswith("s") else kind
        self.group = entry_point_group if entry_point_group is not None else f"unlearnbench.{kind}"
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = False

    def register(self, name: str | None = None, **info: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", summary=...)``; the name defaults to ``__name__``."""

        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj, **info)
            return obj

        return deco

    def add(self, name: str, obj: T, **info: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.singular} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, dict(info))

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                ep.load()  # the plug-in module registers itself on import
            except Exception as exc:  # a broken plug-in must not break the built-ins
                log.warning("could not load %s plug-in %r: %s", self.kind, ep.name, exc)

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            valid = self.names()
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"Unknown {self.singular} {name!r}.{hint} Valid names: {', '.join(valid)}."
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def info(self, name: str) -> dict[str, Any]:
        return self.entry(name).info

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
