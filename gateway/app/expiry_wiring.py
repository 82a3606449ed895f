"""Consent expiry wiring (I/O layer): the rule table's durations and the listing behind
``GET /v1/consent/expiring`` (gateway/edges/http/expiry_api.py) and
``gateway consent expiring`` (gateway/app/expiry_cli.py).

The durations are read from ``[rules] shipped_dir`` and ``operator_dir`` whatever ``[rules]
enabled`` says: the listing reports how long the law lets each basis last, which does not
depend on whether the send gate applies the rules (docs/rules.md, "Consent duration"). An
empty ``shipped_dir`` reads the source tree's table, as the gate and the audit wiring do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import asyncpg
from aiohttp import web

from gateway.edges.http import expiry_api
from gateway.edges.http.expiry_api import EXPIRY, ExpiryDeps
from gateway.edges.http.server import Register
from gateway.errors import ConfigError
from gateway.settings import SOURCE_RULES, Settings
from gateway.store.consent_expiry import ConsentExpiry
from keywords.catalog import SenderCatalog
from rules.errors import RulesError
from rules.loading import load_rules
from rules.model import Basis, Duration


def load_durations(settings: Settings) -> Mapping[Basis, Duration]:
    """How long each basis lasts, shipped table and operator rules merged; ``ConfigError``
    naming the file and key of a rule that cannot be loaded."""
    shipped, operator = settings.rules.shipped_dir, settings.rules.operator_dir
    try:
        rules = load_rules(Path(shipped or SOURCE_RULES), Path(operator) if operator else None)
    except RulesError as exc:
        raise ConfigError(f"[rules]: {exc}") from exc
    return rules.durations


class ExpiryEdge:
    """The listing of one gateway instance, over its pool and live catalogs."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, catalogs: Mapping[str, SenderCatalog]
    ) -> None:
        self.service = ConsentExpiry(pool, load_durations(settings), catalogs)
        self._catalogs = catalogs

    def http_module(self) -> Register:
        """Registers the route with its dependencies."""

        def register(app: web.Application) -> None:
            app[EXPIRY] = ExpiryDeps(self.service, self._catalogs)
            expiry_api.register(app)

        return register
