"""Loading sender catalogs: TOML files in, validated ``SenderCatalog`` values out.

Kept apart from ``keywords/catalog.py`` (the data model) so the model imports nothing that
builds on it: ``schema.py`` validates into the model's dataclasses, and this module reads files
and hands their contents to ``schema.py``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from keywords.catalog import SenderCatalog
from keywords.errors import CatalogError
from keywords.schema import parse_sender


def load_sender(data: Mapping[str, object], source: str) -> SenderCatalog:
    """Validate parsed TOML ``data`` and build its catalog; ``CatalogError`` names the key."""
    return parse_sender(data, source)


def load_sender_file(path: Path) -> SenderCatalog:
    """Read and validate one sender TOML file."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(source, "", f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CatalogError(source, "", f"not UTF-8: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(source, "", f"invalid TOML: {exc}") from exc
    return load_sender(data, source)


def load_catalogs(directory: Path) -> dict[str, SenderCatalog]:
    """Load every ``*.toml`` in ``directory``, keyed by sender; a sender defined twice fails."""
    catalogs: dict[str, SenderCatalog] = {}
    for path in sorted(directory.glob("*.toml")):
        catalog = load_sender_file(path)
        first = catalogs.get(catalog.sender)
        if first is not None:
            raise CatalogError(
                catalog.source, "sender", f'"{catalog.sender}" is already defined in {first.source}'
            )
        catalogs[catalog.sender] = catalog
    return catalogs
