"""The writer's plan step (store layer, no I/O): from what a batch read to the rows it writes.

The writer (writer.py) reads, under the contact locks, which events are new, the current
consent states and versions, and the suppression hashes that captures hit; ``plan_batch``
turns that into typed rows, with no I/O, so it is tested without PostgreSQL
(tests/store/test_store_plan.py). The writer then chains the ledger rows (chain.py),
writes everything and tells the cache (invalidate.py).

* ``keywords.consent.decide`` runs event by event, in the batch's order, each on the states
  the events before it left: two events for one contact in one batch chain like two batches.
  A redelivery (an event not inserted now) decides nothing (docs/DESIGN.md, invariant 3);
* each transition is one ledger row and sets the consent row to ``version + 1``; a scope
  changed twice in the batch is written once, with its last state;
* an opt-out cancels the person's unsent opt-in replies of that sender: those earlier
  batches queued (their outbox ids, ``cancel``) and this batch's own, which are written
  already cancelled; its own confirmation is queued (invariants 2 and 5);
* the cache entries carry the new versions: the writer tombstones them before COMMIT;
* a transition to opted_in carries in its ledger evidence the ``basis`` its program's
  sign-up records (``Program.basis``), so the ledger says on what ground the consent was
  taken and how long it lasts (docs/rules.md, "Consent duration").

Revoke-all and the keep offer (keywords/keep.py, migration 003): ``decide`` gets the event's
``revoke_all`` and the scope's open offer, advanced event by event like the states. A
decision with an offer writes it (``Plan.offers``, if its confirmation is sent); any other
consent change in the scope closes the open one (``Plan.closed_offers``). A widened opt-out
and an answer to an offer say so in their evidence: ``revoke_all: widened`` with the
program named, the programs offered; ``keep_offer: answered`` with the offering event.

An event that could give consent is checked against the suppression list (``capture_probes``
names what to look up). Captured by someone else, it is refused (``Plan.refused``): the
writer rolls the batch back and commits it again without it, so it writes nothing. The
person's own opt-in (``InboundMessage.from_the_person``) lifts the suppression in the same
transaction (``Plan.lifts``), with a ledger evidence field; the writer adds the audit row
and the NOTIFY that tells every instance. An address that was erased starts its versions
above the erased contact's (see ``plan_batch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from gateway.messages import InboundMessage, Method
from gateway.store import statements as sql
from gateway.store.cache import CachedConsent, ConsentKey
from gateway.store.ledger import evidence_digest, evidence_json
from keywords.catalog import SenderCatalog
from keywords.consent import decide
from keywords.keep import OFFER_SECONDS
from keywords.model import ConsentState, Decision, Intent, IntentKind, Reply, ReplyKind

if TYPE_CHECKING:
    from gateway.store.suppression import Suppression

# Replies an opt-out later in the same batch cancels (write_changes cancels earlier batches').
_CANCELLABLE = frozenset(
    {ReplyKind.OPT_IN.value, ReplyKind.PENDING.value, ReplyKind.ALREADY_OPTED_IN.value}
)
# Intents that can never give consent skip the suppression check; any other (a new kind
# included) is checked.
_NEVER_CONSENT = frozenset(
    {IntentKind.OPT_OUT, IntentKind.OPT_OUT_ALL, IntentKind.HELP, IntentKind.UNKNOWN}
)
_NO_ROW = (ConsentState.NONE, 0)
QUEUED = "queued"
CANCELLED = "cancelled"

Scope = tuple[int, str, str]  # contact_id, sender, channel: what an opt-out cancels in


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An inbound message, validated and classified, ready to be decided and written."""

    message: InboundMessage
    address: str  # the contact key (gateway/addresses.py)
    catalog: SenderCatalog
    intent: Intent
    send_to: str = ""  # where replies go: the validated address as written; "" = ``address``
    # Revoke-all is in force for this opt-out (the pipeline asked rules.revocation): an
    # opt-out of one program is every program's (keywords/consent.py).
    revoke_all: bool = False


class LedgerRow(NamedTuple):
    """A ledger event as decided; the writer gives it its seq and hash (chain.py)."""

    contact_id: int
    channel: str
    sender: str
    program: str
    action: str
    method: str
    old_state: str
    new_state: str
    server_time: datetime
    carrier_time: datetime | None
    inbound_id: int | None  # the column allows none; the writer's rows always have one
    evidence: str  # canonical JSON, stored as written
    evidence_sha256: bytes


class ConsentRow(NamedTuple):
    """A consent row to upsert, for one ``sql.KeyState``."""

    contact_id: int
    sender: str
    channel: str
    program: str
    state: ConsentState
    version: int
    ledger_index: int  # the row in ``Plan.ledger`` that set it: its seq is ``last_seq``
    address: str  # the contact key, for the cache


class OutboxRow(NamedTuple):
    """An outbox row to insert, fields in the order of the ``writer_outbox_row`` type."""

    channel: str
    sender: str
    program: str | None
    contact_id: int
    recipient: str
    kind: str
    language: str
    body: str
    inbound_id: int
    status: str  # QUEUED, or CANCELLED when an opt-out later in the batch cancels it


class OfferRow(NamedTuple):
    """A keep offer to write, fields in the order of the ``writer_keep_offer_row`` type."""

    contact_id: int
    sender: str
    channel: str
    programs: list[str]
    inbound_id: int
    offered_at: datetime
    expires_at: datetime


class Lift(NamedTuple):
    """The person's own opt-in on a suppressed address: the suppression to remove."""

    inbound_id: int
    contact_id: int
    channel: str
    sender: str
    method: str
    hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one batch writes, decided; empty parts are empty, never None."""

    decisions: dict[str, Decision]  # by dedupe key, for the events inserted now
    ledger: list[LedgerRow]  # in the order they are chained
    consent: dict[sql.KeyState, ConsentRow]
    cancel: list[int]  # outbox ids of earlier batches' unsent opt-in replies
    outbox: list[OutboxRow]
    cache_entries: dict[ConsentKey, CachedConsent]  # the new versions, to tombstone
    lifts: list[Lift]
    refused: frozenset[str]  # dedupe keys of others' captures for suppressed addresses
    offers: list[OfferRow]  # keep offers made now, one per scope
    closed_offers: list[Scope]  # scopes whose open offer a change closed (none in offers)


def unique_events(events: Sequence[PreparedEvent]) -> dict[str, PreparedEvent]:
    """The first event of each dedupe key, in order (copies in one batch are duplicates)."""
    unique: dict[str, PreparedEvent] = {}
    for event in events:
        unique.setdefault(event.message.dedupe_key, event)
    return unique


def inbound_row(event: PreparedEvent) -> sql.InboundRow:
    """The event's ``inbound_events`` row."""
    m = event.message
    return sql.InboundRow(
        dedupe_key=m.dedupe_key,
        channel=event.catalog.channel.value,
        address=event.address,
        sender=event.catalog.sender,
        method=m.method.value,
        received_at=m.received_at,
        carrier_time=m.carrier_time,
        intent=event.intent.kind.value,
        match=event.intent.match.value,
        needs_review=event.intent.needs_review,
        body=m.text,
        evidence=evidence_json(m.evidence),
    )


def capture_probes(
    unique: Mapping[str, PreparedEvent], fresh: Mapping[str, int], suppression: Suppression
) -> tuple[list[tuple[str, bytes, int]], list[tuple[str, list[bytes]]]]:
    """What to look up in the suppression list: (channel, hash, form index) probes, and per
    form the dedupe key and its hashes, for the new events that could give consent."""
    probes: list[tuple[str, bytes, int]] = []
    forms: list[tuple[str, list[bytes]]] = []
    for key, event in unique.items():
        if key not in fresh or event.intent.kind in _NEVER_CONSENT:
            continue
        channel = event.catalog.channel.value
        # For email, the spelling as written is also the form keyed before migration 011.
        digests = [d for _, d in suppression.digests(channel, event.address, event.send_to or None)]
        probes.extend((channel, d, len(forms)) for d in digests)
        forms.append((key, digests))
    return probes, forms


def refused_when_suppressed(decision: Decision, message: InboundMessage) -> bool:
    """Others' capture for an erased address: refused if it would opt the person in, or
    ask them to confirm through anything but a web form (README "Data-subject rights")."""
    for tr in decision.transitions:
        if tr.new is ConsentState.OPTED_IN:
            return True
        if tr.new is ConsentState.PENDING and message.method is not Method.WEB_FORM:
            return True
    return False


def _with_basis(
    fields: Mapping[str, str], catalog: SenderCatalog, program: str
) -> tuple[str, bytes]:
    """An opt-in's evidence with the consent basis the program's sign-up records, written
    after the caller's fields so no form or file can claim another: the audit shows on what
    ground each consent was taken, and its lapse is counted from it (docs/rules.md,
    "Consent duration"; gateway/store/consent_expiry.py reads it back)."""
    text = evidence_json({**fields, "basis": catalog.program(program).basis})
    return text, evidence_digest(text)


def plan_batch(
    unique: Mapping[str, PreparedEvent],
    recorded: sql.Recorded,
    suppressed: Mapping[str, list[bytes]],
    now: datetime,
) -> Plan:
    """Decide each new event of ``unique`` in order and give the rows the batch writes.

    ``recorded`` is what ``sql.record`` found (contact ids, the events inserted now, the
    states and versions, earlier unsent opt-in replies); ``suppressed`` the hashes of the
    events whose address is suppressed, by dedupe key. Neither is changed.
    """
    contact_ids, fresh = recorded.contact_ids, recorded.fresh
    states = dict(recorded.states)  # advanced event by event, so later events see earlier ones
    earlier_replies = recorded.cancellable
    decisions: dict[str, Decision] = {}
    ledger: list[LedgerRow] = []
    consent: dict[sql.KeyState, ConsentRow] = {}
    cancel: list[int] = []
    cancelled_scopes: set[Scope] = set()
    lifts: list[Lift] = []
    refused: set[str] = set()
    # Events with replies, and per scope the last event that opted out: a cancellable reply
    # of an earlier event in that scope is written cancelled (decided before any row exists).
    replying: list[tuple[int, PreparedEvent, int, int, tuple[Reply, ...]]] = []
    last_opt_out: dict[Scope, int] = {}
    # Per scope its open offer as the events so far left it (None: closed in this batch).
    offers: dict[Scope, sql.KeepOffer | None] = dict(recorded.offers)
    written_offers: dict[Scope, OfferRow | None] = {}
    for index, (key, event) in enumerate(unique.items()):
        inbound_id = fresh.get(key)
        if inbound_id is None:
            continue
        msg = event.message
        sender, channel = event.catalog.sender, event.catalog.channel.value
        cid = contact_ids[(channel, event.address)]
        current = {
            program: states.get((cid, sender, channel, program), _NO_ROW)[0]
            for program in (p.name for p in event.catalog.programs)
        }
        scope = (cid, sender, channel)
        open_offer = offers.get(scope)
        decision = decide(
            event.intent,
            current,
            event.catalog,
            revoke_all=event.revoke_all,
            offer=open_offer.programs if open_offer is not None else (),
        )
        decisions[key] = decision
        lifted: dict[str, str] = {}
        floor = 0
        hashes = suppressed.get(key)
        if hashes is not None:
            if not msg.from_the_person and refused_when_suppressed(decision, msg):
                refused.add(key)
                continue
            # The erased contact's cached states (the same address, with versions above
            # this newer contact's) must not mask what is recorded now: start above them.
            floor = int(now.timestamp() * 1000)
            if msg.from_the_person and any(
                tr.new is ConsentState.OPTED_IN for tr in decision.transitions
            ):
                # The person's own fresh opt-in: a new record starts here (the erased
                # contact stays pseudonymised; this one was created after it).
                lifted = {"suppression_lifted": "yes"}
                lifts.append(Lift(inbound_id, cid, channel, sender, msg.method.value, hashes))
        if decision.transitions:
            intent = decision.intent  # KEEP when the text answered an open offer
            fields = {
                **msg.evidence,
                **lifted,
                **_keep_evidence(decision, open_offer, msg.suppress_replies),
                "text": msg.text,
                "dedupe_key": msg.dedupe_key,
                "intent": intent.kind.value,
                "match": intent.match.value,
                "keyword": intent.keyword or "",
                "needs_review": "yes" if intent.needs_review else "no",
            }
            evidence = evidence_json(fields)
            if scope in offers:
                # Any change closes the open offer; this decision may make the next one.
                offers[scope] = None
                written_offers[scope] = None
            if decision.offer and not msg.suppress_replies:
                # Only an offer the person is sent can be answered.
                offers[scope] = sql.KeepOffer(inbound_id, decision.offer)
                written_offers[scope] = OfferRow(
                    cid, sender, channel, list(decision.offer), inbound_id, now,
                    now + timedelta(seconds=OFFER_SECONDS),
                )  # fmt: skip
            digest = evidence_digest(evidence)
            for tr in decision.transitions:
                row_evidence, row_digest = evidence, digest
                if tr.new is ConsentState.OPTED_IN:
                    row_evidence, row_digest = _with_basis(fields, event.catalog, tr.program)
                if tr.new is ConsentState.OPTED_OUT:
                    last_opt_out[scope] = index
                    if scope not in cancelled_scopes:
                        cancelled_scopes.add(scope)
                        cancel.extend(earlier_replies.get(scope, ()))
                skey = (cid, sender, channel, tr.program)
                version = max(states.get(skey, _NO_ROW)[1], floor) + 1
                states[skey] = (tr.new, version)
                consent[skey] = ConsentRow(
                    cid, sender, channel, tr.program, tr.new, version, len(ledger), event.address
                )
                ledger.append(
                    LedgerRow(
                        contact_id=cid,
                        channel=channel,
                        sender=sender,
                        program=tr.program,
                        action=tr.action.value,
                        method=msg.method.value,
                        old_state=tr.old.value,
                        new_state=tr.new.value,
                        server_time=now,
                        carrier_time=msg.carrier_time,
                        inbound_id=inbound_id,
                        evidence=row_evidence,
                        evidence_sha256=row_digest,
                    )
                )
        if decision.replies and not msg.suppress_replies:
            replying.append((index, event, cid, inbound_id, decision.replies))

    outbox: list[OutboxRow] = []
    for index, event, cid, inbound_id, replies in replying:
        sender, channel = event.catalog.sender, event.catalog.channel.value
        cancelled = last_opt_out.get((cid, sender, channel), -1) > index
        recipient = event.send_to or event.address
        for reply in replies:
            kind = reply.kind.value
            status = CANCELLED if cancelled and kind in _CANCELLABLE else QUEUED
            reply_row = OutboxRow(
                channel, sender, reply.program, cid, recipient, kind, reply.language,
                reply.text, inbound_id, status,
            )  # fmt: skip
            outbox.append(reply_row)
    cache_entries: dict[ConsentKey, CachedConsent] = {}
    if not refused:  # else the batch is rolled back before anything reaches Redis
        since = now.timestamp()
        for row in consent.values():
            ckey = ConsentKey(row.channel, row.sender, row.program, row.address)
            cache_entries[ckey] = CachedConsent(row.state, row.version, since)
    made = [row for row in written_offers.values() if row is not None]
    closed = [scope for scope, row in written_offers.items() if row is None]
    return Plan(
        decisions, ledger, consent, cancel, outbox, cache_entries, lifts, frozenset(refused),
        made, closed,
    )  # fmt: skip


def _keep_evidence(
    decision: Decision, answered: sql.KeepOffer | None, silent: bool
) -> dict[str, str]:
    """What the ledger says about revoke-all (47 CFR 64.1200(a)(10)-(11), keywords/keep.py):
    a widened opt-out names the program asked for and the programs offered back; an answer
    names the offer it answered."""
    if decision.widened:
        found = {"revoke_all": "widened", "revoke_all_named": decision.intent.program or ""}
        if decision.offer and not silent:
            found["keep_offer"] = ",".join(decision.offer)
        return found
    if decision.intent.kind is IntentKind.KEEP and answered is not None:
        return {
            "keep_offer": "answered",
            "keep_offer_inbound_id": str(answered.inbound_id),
            "keep_offer_programs": ",".join(answered.programs),
        }
    return {}
