"""Errors (pure layer): one root for the keywords package, with file and key on catalog errors."""

from __future__ import annotations


class KeywordsError(Exception):
    """Root of every error raised by the pure keywords/consent core."""


class CatalogError(KeywordsError):
    """A sender catalog (a TOML file under config/senders/) is invalid.

    ``source`` is the file path (or a name for in-memory data) and ``key`` the dotted TOML key
    at fault, so an operator can go straight to the line: ``12345.toml: keywords.en.opt_in: ...``.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


class DecisionError(KeywordsError):
    """The consent decision was asked about a state/intent pair the table does not define."""
