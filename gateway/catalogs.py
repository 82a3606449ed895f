"""The sender catalog registry: the one live set of catalogs every part of an instance reads.

Loaded from ``config/senders/`` at start; the admin API (gateway/app/api_wiring.py,
``CatalogAdmin``) swaps a sender's catalog in here, on the instance that took the change and,
by NOTIFY, on every other. Each ``SenderCatalog`` is an immutable value replaced by one
synchronous assignment, so a reader sees the old catalog or the new one, never a mix.

Nobody copies the catalogs: parts that need an index over them (the email lists by token
digest, by domain) rebuild it when ``version`` moves, so an admin change reaches one-click
links, inbound mail and the gate at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar, overload

from keywords.catalog import SenderCatalog

_T = TypeVar("_T")


class CatalogRegistry(Mapping[str, SenderCatalog]):
    """Sender -> catalog, replaced entry by entry; ``version`` counts the replacements."""

    def __init__(self, catalogs: Mapping[str, SenderCatalog]) -> None:
        self._catalogs = dict(catalogs)
        self._version = 0

    @classmethod
    def of(cls, catalogs: Mapping[str, SenderCatalog]) -> CatalogRegistry:
        """``catalogs`` itself when it is a registry, else a registry holding a copy."""
        return catalogs if isinstance(catalogs, CatalogRegistry) else cls(catalogs)

    @property
    def version(self) -> int:
        """Moves on every ``replace``: derived indexes compare it to know they are stale."""
        return self._version

    def replace(self, sender: str, catalog: SenderCatalog) -> None:
        """Serve ``catalog`` for ``sender`` from now on (added if new)."""
        self._catalogs[sender] = catalog
        self._version += 1

    def __getitem__(self, sender: str) -> SenderCatalog:
        return self._catalogs[sender]

    def __iter__(self) -> Iterator[str]:
        return iter(self._catalogs)

    def __len__(self) -> int:
        return len(self._catalogs)

    def __contains__(self, sender: object) -> bool:
        return sender in self._catalogs

    @overload
    def get(self, sender: str, /) -> SenderCatalog | None: ...
    @overload
    def get(self, sender: str, default: SenderCatalog | _T, /) -> SenderCatalog | _T: ...
    def get(self, sender: str, default: object = None, /) -> object:
        """The catalog for ``sender``: a dict lookup (the pipeline calls it per message)."""
        return self._catalogs.get(sender, default)
