"""Send rules changed through the admin API (I/O layer): validated, stored, live everywhere.

An operator document is the TOML text of one file of ``[rules] operator_dir``; the admin API
stores it by name (gateway/store/rule_overrides.py). The rules an instance serves are the
shipped table with, on top of it as one operator layer, the ``operator_dir`` files and the
stored documents (sorted by name, each named ``stored:<name>`` in errors and listings),
loaded by ``rules.loading.load_rules`` exactly as files are: a definition weaker than the
shipped one, one defined twice, a window that never opens, or a rule set under which a
program's basis cannot carry its categories (``SendRules.problems``) is refused with 422
``invalid_rules`` naming the document and the key, and nothing is stored (docs/rules.md,
"Operators: adding and replacing rules").

A change is checked, stored, audited and announced in one transaction; the instance that
took it swaps the new compiled rules in at once, and every other one on hearing the NOTIFY
(topic ``rules``) reads the table, rebuilds them and swaps them in by one assignment
(``SendRules.swap``), as sender catalogs are (gateway/catalogs.py). A gate request already
answering keeps the ``SendTerms`` it started with. An instance reads the table at start,
before it serves HTTP; a stored set that no longer loads there (a shipped rule made
stricter by an upgrade, an ``operator_dir`` file that now conflicts) stops the start, as an
``operator_dir`` file would. One that no longer loads on a running instance keeps the rules
it serves and logs why (the document's name and key, never its text).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from gateway.errors import BadInput, ConfigError, TemporaryFailure
from gateway.send_rules import SendRules
from gateway.settings import SOURCE_RULES, RulesSettings
from gateway.store.db import DB_ERRORS
from gateway.store.rule_overrides import RuleOverrides
from keywords.catalog import SenderCatalog
from rules.errors import RulesError
from rules.evaluate import CompiledRules
from rules.loading import load_rules, parse_rule_text

log = logging.getLogger(__name__)

# A stored document's source in errors and in the listing: never a path on any instance.
STORED = "stored:"
# Document names: what a file name in operator_dir would be, without ".toml"; the same
# pattern is a CHECK in migration 007.
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class RulesAdmin:
    """Validates rule documents as operator files, stores them and swaps the rules in."""

    def __init__(
        self,
        settings: RulesSettings,
        overrides: RuleOverrides,
        send_rules: SendRules,
        catalogs: Mapping[str, SenderCatalog],
    ) -> None:
        # "" only in settings built without a file: the source tree's table, as SendRules.
        self._shipped = Path(settings.shipped_dir or SOURCE_RULES)
        self._operator = Path(settings.operator_dir) if settings.operator_dir else None
        self._default_zone = settings.default_zone
        self._overrides = overrides
        self._rules = send_rules
        self._catalogs = catalogs
        # The documents behind the compiled rules served now: none until ``load``.
        self._serving: dict[str, str] = {}
        # One change or reload at a time here, so a reload that read the table before this
        # instance's own change committed cannot swap the older rules in after it.
        self._lock = asyncio.Lock()

    def compile(self, documents: Mapping[str, str]) -> CompiledRules:
        """The rules of the files and ``documents`` (name -> TOML text), or ``BadInput``
        (422 ``invalid_rules``) naming the document or file and the key at fault."""
        pairs = [(STORED + name, documents[name]) for name in sorted(documents)]
        try:
            rule_set = load_rules(self._shipped, self._operator, pairs)
        except RulesError as exc:
            raise BadInput(str(exc), code="invalid_rules") from None
        compiled = CompiledRules(rule_set, default_zone=self._default_zone)
        problems = self._rules.problems(self._catalogs, compiled)
        if problems:
            raise BadInput("; ".join(problems), code="invalid_rules")
        return compiled

    async def put(self, name: str, document: str, actor: str) -> int:
        """Validate ``document`` on top of everything else, store it (audited, announced)
        and serve the result here at once; its revision."""
        if "\x00" in document:  # PostgreSQL text cannot hold NUL (gateway/storable.py)
            raise BadInput("the document holds a NUL character", code="invalid_rules")
        # The document alone first (its own syntax and schema), before any database work.
        try:
            layer = parse_rule_text(document, STORED + name)
        except RulesError as exc:
            raise BadInput(str(exc), code="invalid_rules") from None
        if not (layer.rules or layer.categories or layer.durations or layer.holidays):
            raise BadInput(
                "the document defines no rule, category, consent duration or holidays",
                code="invalid_rules",
            )
        found: list[tuple[dict[str, str], CompiledRules]] = []

        def check(after: Mapping[str, str]) -> None:
            found.append((dict(after), self.compile(after)))

        async with self._lock:
            try:
                revision = await self._overrides.save(name, document, actor=actor, check=check)
            except DB_ERRORS as exc:  # nothing committed: 503, the client retries
                raise TemporaryFailure("the rules could not be stored; retry") from exc
            self._swap(*found[-1])
        log.info("rules updated", extra={"document": name, "revision": revision, "actor": actor})
        return revision

    async def delete(self, name: str, actor: str) -> int | None:
        """Remove a document if the rest still loads (audited, announced) and serve the
        result here at once; the revision removed, or None when there was none."""
        found: list[tuple[dict[str, str], CompiledRules]] = []

        def check(after: Mapping[str, str]) -> None:
            found.append((dict(after), self.compile(after)))

        async with self._lock:
            try:
                revision = await self._overrides.delete(name, actor=actor, check=check)
            except DB_ERRORS as exc:  # nothing committed: 503, the client retries
                raise TemporaryFailure("the rules could not be changed; retry") from exc
            if revision is not None:
                self._swap(*found[-1])
        if revision is not None:
            log.info("rules deleted", extra={"document": name, "revision": revision,
                     "actor": actor})  # fmt: skip
        return revision

    async def load(self) -> None:
        """At start: serve the stored documents, or stop the start naming the one at fault."""
        try:
            await self.reload(strict=True)
        except BadInput as exc:
            raise ConfigError(f"[rules] stored documents: {exc.message}") from None

    async def reload(self, *, strict: bool = False) -> None:
        """Rebuild from the table when it differs from what is served (after a NOTIFY or a
        reconnect); one that does not load keeps the served rules, unless ``strict``."""
        async with self._lock:
            stored = {d.name: d.document for d in await self._overrides.documents()}
            if stored == self._serving:
                return
            try:
                compiled = self.compile(stored)
            except BadInput as exc:
                if strict:
                    raise
                log.error(
                    "stored rules do not load; kept the rules served",
                    extra={"error": exc.message[:300]},
                )
                return
            self._swap(stored, compiled)
        log.info("rules reloaded", extra={"documents": sorted(stored)})

    def _swap(self, documents: dict[str, str], compiled: CompiledRules) -> None:
        self._rules.swap(compiled)
        self._serving = documents

    async def summary(self) -> dict[str, Any]:
        """The rule set this instance serves now, where each part is defined, and the
        stored documents."""
        rules = self._rules.compiled.rules
        documents = await self._overrides.documents()
        return {
            "rules": [
                {
                    "id": r.id,
                    "title": r.title,
                    "jurisdiction": r.jurisdiction,
                    "channels": sorted(r.channels),
                    "categories": sorted(r.categories),
                    "defined_in": self._where(r.file),
                    "sources": [
                        {"citation": s.citation, "url": s.url, "checked": s.checked}
                        for s in r.sources
                    ],
                    "effective": {
                        "from": _day(r.effective_from),
                        "until": _day(r.effective_until),
                    },
                }
                for r in sorted(rules.rules, key=lambda r: r.id)
            ],
            "categories": [
                {
                    "category": str(c),
                    "consent": {str(ch): lv.name.lower() for ch, lv in p.consent.items()},
                    "defined_in": self._where(p.file),
                }
                for c, p in sorted(rules.categories.items())
            ],
            "consent": [
                {"basis": str(b), "months": d.months, "defined_in": self._where(d.file)}
                for b, d in sorted(rules.durations.items())
            ],
            "holidays": [
                {"name": n, "defined_in": self._where(h.file)}
                for n, h in sorted(rules.holidays.items())
            ],
            "serving": sorted(self._serving),
            "documents": [
                {
                    "name": d.name,
                    "revision": d.revision,
                    "updated_at": d.updated_at.isoformat(),
                    "updated_by": d.updated_by,
                    "toml": d.document,
                }
                for d in documents
            ],
        }

    def _where(self, source: str) -> dict[str, str]:
        """``{"layer": "shipped" | "operator_dir" | "stored", "name": file or document}``."""
        if source.startswith(STORED):
            return {"layer": "stored", "name": source.removeprefix(STORED)}
        path = Path(source)
        layer = "shipped" if path.parent == self._shipped else "operator_dir"
        return {"layer": layer, "name": path.name}


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()
