"""The send gate (I/O layer): may this sender send to these contacts for this program?

Only ``opted_in`` allows a send. The cache answers while the guard trusts it; a miss, a
tombstone, or an untrusted cache sends the question to Postgres, whose answer is written
back with compare-and-set by version. "No consent row" is not written back to Redis: the
cache keeps it in this process only (store/cache.py), so a batch of numbers nobody has heard
of costs Redis nothing. A Postgres failure refuses the whole request with a temporary
error: the gate fails closed (README, "How the invariants are kept").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg

from gateway.addresses import E164_RE, all_e164, legacy_email_key, normalize_address
from gateway.errors import BadInput, InvalidAddress, TemporaryFailure, UnknownSender
from gateway.metrics import Metrics
from gateway.send_rules import HISTORY_RETRY, HISTORY_SPAN, SendRules, SendTerms
from gateway.send_rules import check as check_rules
from gateway.store.cache import (
    NO_CONSENT,
    CachedConsent,
    CacheUnavailable,
    ConsentCache,
    ConsentKey,
)
from gateway.store.contact_locations import ContactLocations
from gateway.store.gate_reads import consent_states
from gateway.store.guard import CacheGuard
from gateway.store.send_history import sends_since
from keywords.catalog import SenderCatalog
from keywords.model import Channel, ConsentState
from rules.location import email_key, sms_key
from rules.model import NO_HISTORY, Answer, Verdict
from rules.model import Channel as RuleChannel

log = logging.getLogger(__name__)


class GateReason(StrEnum):
    """Why the gate answered as it did; stable strings for API clients."""

    OPTED_IN = "opted_in"
    NO_CONSENT = "no_consent"
    PENDING = "pending_confirmation"
    OPTED_OUT = "opted_out"
    INVALID_ADDRESS = "invalid_address"
    SUPPRESSED = "suppressed"  # erased (GDPR art. 17): never messaged again
    DEFERRED = "deferred"  # consented, but a send rule allows it only from ``not_before``
    REFUSED_BY_RULE = "refused_by_rule"  # consented, but a send rule refuses it (``detail``)


_REASON = {
    ConsentState.OPTED_IN: GateReason.OPTED_IN,
    ConsentState.NONE: GateReason.NO_CONSENT,
    ConsentState.PENDING: GateReason.PENDING,
    ConsentState.OPTED_OUT: GateReason.OPTED_OUT,
}


@dataclass(frozen=True, slots=True)
class GateAnswer:
    """One recipient's answer: ``since`` is when the deciding state was recorded.

    ``verdict`` is ``allowed``, ``refused`` or ``deferred``; a deferred answer carries
    ``not_before``, the first instant every send rule allows, and both it and a rule's
    refusal say why in ``detail`` (docs/rules.md).
    """

    allowed: bool
    reason: GateReason
    since: datetime | None = None
    not_before: datetime | None = None
    detail: str | None = None

    @property
    def verdict(self) -> str:
        """``allowed``, ``deferred`` or ``refused``."""
        if self.allowed:
            return "allowed"
        return "deferred" if self.reason is GateReason.DEFERRED else "refused"


_INVALID = GateAnswer(False, GateReason.INVALID_ADDRESS)
_MEMO_LIMIT = 500_000
_SUPPRESSED = GateAnswer(False, GateReason.SUPPRESSED)


def _ruled(
    memo: dict[tuple[object, int], GateAnswer], consented: GateAnswer, ruled: Answer
) -> GateAnswer:
    """A consented answer that a send rule defers or refuses (shared by equal pairs)."""
    key = (consented.since, id(ruled))
    found = memo.get(key)
    if found is None:
        if ruled.verdict is Verdict.DEFERRED:
            found = GateAnswer(
                False, GateReason.DEFERRED, consented.since, ruled.not_before, ruled.reason
            )
        else:
            found = GateAnswer(
                False, GateReason.REFUSED_BY_RULE, consented.since, None, ruled.reason
            )
        memo[key] = found
    return found


# Consent rows committed in one group commit share their time, so the instants an answer
# names repeat: each is made once (``fromtimestamp`` was the cold batch's largest single
# cost, 2026-12-03 cProfile of 100,000 answers read from Redis). Bounded like the memo.
_INSTANTS: dict[float, datetime] = {}


def _answer(entry: CachedConsent) -> GateAnswer:
    since = None
    if entry.since is not None:
        since = _INSTANTS.get(entry.since)
        if since is None:
            if len(_INSTANTS) > _MEMO_LIMIT:
                _INSTANTS.clear()
            since = _INSTANTS[entry.since] = datetime.fromtimestamp(entry.since, UTC)
    return GateAnswer(entry.state is ConsentState.OPTED_IN, _REASON[entry.state], since)


class SendGate:
    """Answers send-gate questions for every edge and API."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: ConsentCache,
        guard: CacheGuard,
        catalogs: Mapping[str, SenderCatalog],
        metrics: Metrics,
        *,
        suppressed: Callable[[str, str, str | None], bool],
        default_region: str,
        rules: SendRules | None = None,
        locations: ContactLocations | None = None,
    ) -> None:
        self._pool = pool
        self.rules = rules
        # Recorded states and zones (gateway/store/contact_locations.py); None: none kept.
        self.locations = locations
        self._answers: dict[int, tuple[CachedConsent, GateAnswer]] = {}
        self._cache = cache
        self._guard = guard
        self._catalogs = catalogs
        self._metrics = metrics
        self._region = default_region
        # (channel, key, legacy spelling) -> erased? (gateway/store/suppression.py)
        self.suppressed = suppressed

    def _scope(self, sender: str, program: str, channel: Channel) -> SenderCatalog:
        catalog = self._catalogs.get(sender)
        if catalog is None:
            raise UnknownSender("unknown sender")
        if catalog.channel is not channel:
            raise BadInput(f"sender {sender} sends on {catalog.channel.value}, not {channel.value}")
        if not catalog.has_program(program):
            raise BadInput(f"sender {sender} has no program {program!r}", code="unknown_program")
        return catalog

    def terms(
        self,
        sender: str,
        program: str,
        channel: Channel,
        category: str | None = None,
        at: datetime | None = None,
    ) -> SendTerms | None:
        """The send rules' question for one request (None: no rules configured), shared by
        every chunk of a batch so its answers by place are worked out once."""
        catalog = self._scope(sender, program, channel)
        return None if self.rules is None else self.rules.terms(catalog, program, category, at)

    async def check(
        self,
        sender: str,
        program: str,
        channel: Channel,
        address: str,
        terms: SendTerms | None = None,
    ) -> GateAnswer:
        """Check one recipient."""
        return (await self.check_many(sender, program, channel, [address], terms))[0]

    async def check_many(
        self,
        sender: str,
        program: str,
        channel: Channel,
        addresses: Sequence[str],
        terms: SendTerms | None = None,
    ) -> list[GateAnswer]:
        """Check many recipients of one sender and program; answers are in input order.

        ``terms`` (from ``terms``) carries the category and instant; without it, the
        program's first category now.
        """
        self._scope(sender, program, channel)
        if terms is None:
            terms = self.terms(sender, program, channel)
        # Hot path of the batch gate: E.164 input is taken as is (see addresses.py), a whole
        # batch of it in one pass.
        normalized: Sequence[str | None]
        valid: list[str]
        if channel is Channel.SMS and all_e164(addresses):
            normalized = valid = list(addresses)
        else:
            e164 = E164_RE.match if channel is Channel.SMS else None
            each: list[str | None] = []
            append = each.append
            for raw in addresses:
                if e164 is not None and e164(raw):
                    append(raw)
                    continue
                try:
                    append(normalize_address(channel, raw, self._region, fast=True))
                except InvalidAddress:
                    append(None)
            normalized, valid = each, [a for a in each if a is not None]

        cached: list[CachedConsent | None] = [None] * len(valid)
        if self._guard.usable and valid:
            try:
                cached = await self._cache.get_scope(channel.value, sender, program, valid)
            except CacheUnavailable:
                self._guard.report_failure("get")
        misses = [a for a, c in zip(valid, cached, strict=True) if c is None]
        from_db = await self._read_postgres(channel, sender, program, misses) if misses else {}

        answers: list[GateAnswer] = []
        add = answers.append
        allowed = allowed_db = 0
        memo = self._answers
        suppressed, channel_value = self.suppressed, channel.value
        email = channel is Channel.EMAIL
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        if len(cached) < len(normalized):  # invalid addresses have no entry: line them up
            found = iter(cached)
            cached = [None if a is None else next(found) for a in normalized]
        for raw, address, entry in zip(addresses, normalized, cached, strict=True):
            if address is None:
                add(_INVALID)
                continue
            if entry is None:
                answer = _answer(from_db[address])
                allowed_db += answer.allowed
            else:
                # Cached entries are long-lived objects: build each one's answer once. The
                # memo holds the entry itself, so its id cannot be reused while remembered.
                pair = memo.get(id(entry))
                if pair is None or pair[0] is not entry:
                    pair = memo[id(entry)] = (entry, _answer(entry))
                answer = pair[1]
            if answer.allowed:
                allowed += 1  # counted as decided, before the suppression list
                # Email: also the spelling as given, as suppression entries made before
                # addresses were case-folded were keyed.
                legacy = legacy_email_key(raw) if email else None
                if suppressed(channel_value, address, legacy):
                    answer = _SUPPRESSED
            add(answer)
        hits = len(valid) - len(misses)
        allowed_hits = allowed - allowed_db
        gate = self._metrics.gate_checks
        gate.labels("true", "cache").inc(allowed_hits)
        gate.labels("false", "cache").inc(hits - allowed_hits)
        gate.labels("true", "postgres").inc(allowed_db)
        gate.labels("false", "postgres").inc(len(answers) - hits - allowed_db)
        if terms is not None and terms.batch is not None and allowed:
            await self._apply_rules(terms, sender, program, channel, normalized, answers)
        return answers

    async def _apply_rules(
        self,
        terms: SendTerms,
        sender: str,
        program: str,
        channel: Channel,
        normalized: Sequence[str | None],
        answers: list[GateAnswer],
    ) -> None:
        """Turn consented answers into deferrals or refusals where a send rule says so.

        The first pass answers from the place alone (one dict lookup per recipient when the
        basis never lapses); recipients in a place where a capped rule applies are answered
        again with their earlier sends, read in one round trip (docs/rules.md, "Caps").

        The place is the area code (email: the default zone) unless the contact has a
        recorded state or zone, which are read in one round trip, and only while some
        contact of the channel has one (docs/rules.md, "Local time").
        """
        assert self.rules is not None
        assert terms.batch is not None
        rules, batch = self.rules, terms.batch
        sms = channel is Channel.SMS
        email_place = email_key()
        capped, by_place, lasting = batch.capped, batch.answers, terms.lasting
        memo: dict[tuple[object, int], GateAnswer] = {}
        later: list[tuple[int, str, str]] = []
        from_real = rules.clock.from_real
        allowed = Verdict.ALLOWED
        clear: set[str] = set()  # places allowed outright (lasting consent, no cap)
        recorded = await self._recorded(channel, normalized, answers)  # {}: nobody located
        for i, answer in enumerate(answers):
            if not answer.allowed:
                continue
            address = normalized[i]
            assert address is not None  # an allowed answer has an address
            if recorded and address in recorded:
                state, zone = recorded[address]
                place = sms_key(address, state, zone) if sms else email_key(state, zone)
            elif not sms:
                place = email_place
            elif address.startswith("+1"):
                place = address[:5]  # rules.location.sms_key's common case, inlined
            else:
                place = sms_key(address)
            if lasting:
                if place in clear:
                    continue
                verdict = by_place[place]
            else:
                since = None if answer.since is None else from_real(answer.since)
                verdict = check_rules(terms, place, rules.consent(terms, since), NO_HISTORY)
            if place in capped:
                later.append((i, address, place))
            elif lasting and verdict.verdict is allowed:
                clear.add(place)
            if verdict.verdict is not allowed:
                answers[i] = _ruled(memo, answer, verdict)
        if not later:
            return
        at = terms.at
        try:
            past = await sends_since(
                self._pool,
                channel.value,
                [a for _, a, _ in later],
                at - HISTORY_SPAN,
                rules.clock.to_real(at - HISTORY_SPAN),
            )
        except TemporaryFailure:
            # Consent came from the cache, but the counts cannot be read: a capped send is
            # deferred, never allowed blind (docs/rules.md, "Caps").
            log.warning(
                "send history unreadable: capped sends deferred", extra={"count": len(later)}
            )
            self._defer_unknown(answers, later, at, memo)
            return
        for i, address, place in later:
            sent, first = past.get(address), answers[i]
            if not sent or not (first.allowed or first.reason is GateReason.DEFERRED):
                continue
            history = rules.history(
                sent, sender, program, RuleChannel(channel.value), self._catalogs, terms.category
            )
            base = first
            if base.reason is GateReason.DEFERRED:  # the consent answer it came from
                base = GateAnswer(True, GateReason.OPTED_IN, base.since)
            since = None if base.since is None else from_real(base.since)
            verdict = check_rules(terms, place, rules.consent(terms, since), history)
            answers[i] = base if verdict.verdict is Verdict.ALLOWED else _ruled(memo, base, verdict)

    @staticmethod
    def _defer_unknown(
        answers: list[GateAnswer],
        later: list[tuple[int, str, str]],
        at: datetime,
        memo: dict[tuple[object, int], GateAnswer],
    ) -> None:
        """Defer every capped recipient by ``HISTORY_RETRY`` past its answer so far."""
        for i, _, _ in later:
            first = answers[i]
            if not (first.allowed or first.reason is GateReason.DEFERRED):
                continue
            start = max(at, first.not_before or at)
            why = Answer(
                Verdict.DEFERRED,
                "the send history could not be read, so a capped rule cannot be checked",
                start + HISTORY_RETRY,
            )
            answers[i] = _ruled(memo, first, why)

    async def _recorded(
        self, channel: Channel, normalized: Sequence[str | None], answers: list[GateAnswer]
    ) -> dict[str, tuple[str | None, str | None]]:
        """The recorded (state, zone) of the allowed recipients that have one; no round trip
        while no contact of the channel has one (the common case)."""
        locations = self.locations
        if locations is None or not locations.located(channel.value):
            return {}
        wanted = [a for a, answer in zip(normalized, answers, strict=True) if answer.allowed and a]
        return await locations.of(channel.value, wanted) if wanted else {}

    async def _read_postgres(
        self, channel: Channel, sender: str, program: str, addresses: list[str]
    ) -> dict[str, CachedConsent]:
        found = await consent_states(self._pool, channel.value, sender, program, addresses)
        result = {a: found.get(a, NO_CONSENT) for a in addresses}
        if self._guard.cache_reachable:
            if len(found) < len(addresses):
                absent = [a for a, e in result.items() if e is NO_CONSENT]
                self._cache.remember_absent(channel.value, sender, program, absent)
            if found:
                entries = [
                    (ConsentKey(channel.value, sender, program, a), e) for a, e in found.items()
                ]
                try:
                    await self._cache.put_many(entries)
                except CacheUnavailable:
                    self._guard.report_failure("fill")
        return result
