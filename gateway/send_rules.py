"""The send rules as the gate asks them (I/O layer, no I/O of its own): what a send is, and when.

``rules/`` is the pure engine; this module joins it to the gateway's data. A program's
sender file names the categories it sends and the consent basis its sign-up records
(keywords/catalog.py); a send names its category or takes the program's first. ``terms``
turns one request (sender, program, channel, category, ``at``) into ``SendTerms``: the
category checked against the program (``category_not_allowed`` otherwise, for the whole
request) and one ``rules.evaluate.Batch`` whose answers by location key every recipient
of the request shares, so a batch costs one dict lookup per recipient after the first of
each area code (docs/rules.md, "How a send is decided").

A person's consent is taken as the program's basis since the consent row's time (the
moment it became opted_in). Caps count the person's earlier sends (``history``): the
gateway's own gated sends and those outside senders report, each counted as its program's
first category; a program is one subject (docs/rules.md, "Caps").

The compiled rules are replaced whole when operator documents change through the admin API
(gateway/app/rules_wiring.py): ``swap`` is one assignment, and ``terms`` reads
``self.compiled`` without awaiting, so a request's ``SendTerms`` (and the ``Batch`` in it)
come from one rule set, kept to the end of the request whatever is swapped in meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gateway.clock import Clock
from gateway.errors import BadInput, ConfigError
from gateway.settings import SOURCE_RULES, RulesSettings
from gateway.store.send_history import PastSend
from keywords.catalog import SenderCatalog
from rules.consent import check_program
from rules.errors import RulesError
from rules.evaluate import Batch, CompiledRules
from rules.loading import load_rules
from rules.model import (
    BASIS_LEVEL,
    NO_HISTORY,
    Answer,
    Basis,
    Category,
    Channel,
    Consent,
    History,
    ProgramPolicy,
    Sent,
)

# Caps count at most a calendar week in the person's zone: eight days back covers it from
# any zone.
HISTORY_SPAN = timedelta(days=8)
# When the earlier sends cannot be read, a capped send is deferred by this much and asked
# again then (the gate errs toward deferring: docs/rules.md, "Caps").
HISTORY_RETRY = timedelta(minutes=5)
# A question about a send more than this far from now is refused (rules.evaluate.HORIZON).
MAX_AT_DISTANCE = timedelta(days=400)


class CategoryNotAllowed(BadInput):
    """The program does not send this category, or its sign-up cannot carry it (HTTP 422)."""

    code = "category_not_allowed"


@dataclass(frozen=True, slots=True)
class SendTerms:
    """One request's question to the rules: its category, instant, and shared answers.

    ``batch`` is None when the rules are off. ``lasting``: the program's basis reaches the
    category and never lapses, so a recipient's consent date does not matter.
    """

    category: Category
    at: datetime
    batch: Batch | None
    basis: Basis
    lasting: bool


class SendRules:
    """The rule set loaded for this instance, and the programs' policies checked against it."""

    def __init__(self, settings: RulesSettings, clock: Clock) -> None:
        self.enabled = settings.enabled
        self.clock = clock
        operator = Path(settings.operator_dir) if settings.operator_dir else None
        try:
            rule_set = load_rules(Path(settings.shipped_dir or SOURCE_RULES), operator)
        except RulesError as exc:
            raise ConfigError(str(exc)) from None
        self.compiled = CompiledRules(rule_set, default_zone=settings.default_zone)

    def swap(self, compiled: CompiledRules) -> None:
        """Answer with ``compiled`` from the next request on (one assignment)."""
        self.compiled = compiled

    def problems(
        self, catalogs: Mapping[str, SenderCatalog], compiled: CompiledRules | None = None
    ) -> list[str]:
        """Programs whose basis cannot carry one of their categories (a start refuses them),
        under the rules served now or under ``compiled``, a candidate not yet swapped in."""
        rules = (compiled or self.compiled).rules
        found = []
        for sender, catalog in catalogs.items():
            channel = Channel(catalog.channel.value)
            for program in catalog.programs:
                policy = _policy(program.name, program.categories, program.basis)
                for name in program.categories:
                    why = check_program(policy, Category(name), channel, rules)
                    if why is not None:
                        found.append(f"sender {sender}: programs.{program.name}: {why}")
        return found

    def terms(
        self,
        catalog: SenderCatalog,
        program: str,
        category: str | None = None,
        at: datetime | None = None,
    ) -> SendTerms:
        """The question for sends of ``program`` of ``category`` at ``at`` (default now)."""
        found = catalog.program(program)
        name = found.categories[0] if category is None else category
        try:
            kind = Category(name)
        except ValueError:
            raise CategoryNotAllowed(
                f"category {name!r} is not one of {', '.join(c.value for c in Category)}"
            ) from None
        channel = Channel(catalog.channel.value)
        basis = Basis(found.basis)
        policy = _policy(found.name, found.categories, found.basis)
        why = check_program(policy, kind, channel, self.compiled.rules)
        if why is not None:
            raise CategoryNotAllowed(why)
        now = self.clock.now()
        if at is None:
            at = now
        elif abs(at - now) > MAX_AT_DISTANCE:
            raise BadInput(
                f"'at' must be within {MAX_AT_DISTANCE.days} days of now", code="invalid_at"
            )
        if not self.enabled:
            return SendTerms(kind, at, None, basis, True)
        batch = self.compiled.for_batch(at, kind, channel)
        durations = self.compiled.rules.durations
        level = self.compiled.rules.categories[kind].consent.get(channel)
        lasting = (
            level is not None
            and BASIS_LEVEL[basis] >= level
            and (basis not in durations or durations[basis].months is None)
        )
        return SendTerms(kind, at, batch, basis, lasting)

    def history(
        self,
        past: Sequence[PastSend],
        sender: str,
        program: str,
        channel: Channel,
        catalogs: Mapping[str, SenderCatalog],
        fallback: Category,
    ) -> History:
        """The caps' view of a person's earlier sends (a program is one subject)."""
        if not past:
            return NO_HISTORY
        subject: list[Sent] = []
        same_sender: list[Sent] = []
        every: list[Sent] = []
        for send in past:
            at = send.at if send.reported else self.clock.from_real(send.at)
            sent = Sent(at, channel, _category_of(catalogs, send, fallback))
            every.append(sent)
            if send.sender == sender:
                same_sender.append(sent)
                if send.program == program:
                    subject.append(sent)
        return History(
            subject=tuple(subject),
            program=tuple(subject),
            sender=tuple(same_sender),
            channel=tuple(every),
        )

    def consent(self, terms: SendTerms, since: datetime | None) -> Consent | None:
        """The person's consent as the rules read it: the program's basis since ``since``."""
        return None if since is None else Consent(terms.basis, since)


def check(terms: SendTerms, key: str, consent: Consent | None, history: History) -> Answer:
    """The rules' answer for one recipient (``terms.batch`` must be set)."""
    assert terms.batch is not None
    if terms.lasting and not history:
        return terms.batch.answers[key]
    return terms.batch.check(key, consent, history)


def _policy(name: str, categories: Sequence[str], basis: str) -> ProgramPolicy:
    return ProgramPolicy(
        name, frozenset(Category(c) for c in categories), BASIS_LEVEL[Basis(basis)]
    )


def _category_of(
    catalogs: Mapping[str, SenderCatalog], send: PastSend, fallback: Category
) -> Category:
    catalog = catalogs.get(send.sender)
    if catalog is None or not catalog.has_program(send.program):
        return fallback  # a program since removed: counted as this send's kind (stricter)
    return Category(catalog.program(send.program).categories[0])
