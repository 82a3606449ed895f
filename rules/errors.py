"""Errors (pure layer): rule data that cannot be loaded names the file and the dotted key."""

from __future__ import annotations


class RulesError(Exception):
    """A rule file (``config/rules/*.toml`` or an operator's file) is invalid.

    ``source`` is the file path and ``key`` the dotted TOML key at fault, as sender catalogs
    report theirs (``keywords.errors.CatalogError``), so an operator can go straight to the
    line: ``florida.toml: rules.us_fl_hours.windows.mon: ends before it starts``.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
