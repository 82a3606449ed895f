"""The writer's plan step on its own: decisions to typed rows, with no PostgreSQL and no Redis.

``plan_batch`` is given what the writer would have read (``sql.Recorded``) and the
suppression hits, and must give the rows the batch writes (gateway/store/plan.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from gateway.messages import InboundMessage, Method
from gateway.store import statements as sql
from gateway.store.cache import CachedConsent, ConsentKey
from gateway.store.ledger import evidence_digest
from gateway.store.plan import (
    CANCELLED,
    QUEUED,
    ConsentRow,
    Lift,
    OutboxRow,
    Plan,
    PreparedEvent,
    capture_probes,
    inbound_row,
    plan_batch,
    unique_events,
)
from gateway.store.suppression import Suppression
from keywords.catalog import SenderCatalog
from keywords.classify import classify
from keywords.loading import load_sender_file
from keywords.model import Channel, ConsentState, Intent, IntentKind, MatchKind

CATALOG: SenderCatalog = load_sender_file(
    Path(__file__).resolve().parents[2] / "config" / "senders" / "12345.toml"
)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADDRESS = "+14155550123"
CID = 7
SCOPE = (CID, "12345", "sms")
S = ConsentState


def _key(program: str, contact_id: int = CID) -> sql.KeyState:
    return (contact_id, "12345", "sms", program)


def _event(
    text: str,
    key: str,
    *,
    address: str = ADDRESS,
    method: Method = Method.SMS_KEYWORD,
    intent: Intent | None = None,
) -> PreparedEvent:
    message = InboundMessage(
        channel=Channel.SMS,
        sender="12345",
        contact=address,
        text=text,
        method=method,
        dedupe_key=key,
        received_at=NOW,
        evidence={"message_id": key},
    )
    return PreparedEvent(message, address, CATALOG, intent or classify(text, CATALOG))


def _plan(
    events: list[PreparedEvent],
    states: dict[sql.KeyState, tuple[ConsentState, int]] | None = None,
    *,
    duplicates: frozenset[str] = frozenset(),
    cancellable: dict[tuple[int, str, str], list[int]] | None = None,
    suppressed: dict[str, list[bytes]] | None = None,
) -> tuple[Plan, sql.Recorded]:
    """Plan ``events`` as the writer would after ``sql.record`` found ``states``."""
    unique = unique_events(events)
    recorded = sql.Recorded(
        contact_ids={("sms", ADDRESS): CID},
        fresh={k: 100 + i for i, k in enumerate(unique) if k not in duplicates},
        states=dict(states or {}),
        cancellable=dict(cancellable or {}),
    )
    return plan_batch(unique, recorded, suppressed or {}, NOW), recorded


def test_an_opt_out_gives_ledger_consent_and_one_confirmation() -> None:
    """STOP from opted in: a ledger row per program changed, each consent row one version
    up and pointing at its ledger row, one opt-out confirmation queued, the earlier batches'
    unsent opt-in replies cancelled, and the new versions ready to tombstone."""
    plan, _ = _plan(
        [_event("STOP", "k1")],
        {_key("reminders"): (S.OPTED_IN, 3)},
        cancellable={SCOPE: [55, 56]},
    )

    assert [("reminders", "opted_in", "opted_out"), ("flu", "none", "opted_out")] == [
        (r.program, r.old_state, r.new_state) for r in plan.ledger
    ]
    row = plan.ledger[0]
    assert (CID, "opt_out", "sms_keyword", 100, NOW) == (
        row.contact_id,
        row.action,
        row.method,
        row.inbound_id,
        row.server_time,
    )
    assert evidence_digest(row.evidence) == row.evidence_sha256
    assert '"dedupe_key":"k1"' in row.evidence
    assert {
        _key("reminders"): ConsentRow(*_key("reminders"), S.OPTED_OUT, 4, 0, ADDRESS),
        _key("flu"): ConsentRow(*_key("flu"), S.OPTED_OUT, 1, 1, ADDRESS),
    } == plan.consent
    assert [("opt_out", QUEUED, ADDRESS, 100)] == [
        (o.kind, o.status, o.recipient, o.inbound_id) for o in plan.outbox
    ]
    assert [55, 56] == plan.cancel
    assert {
        ConsentKey("sms", "12345", "reminders", ADDRESS): CachedConsent(
            S.OPTED_OUT, 4, NOW.timestamp()
        ),
        ConsentKey("sms", "12345", "flu", ADDRESS): CachedConsent(S.OPTED_OUT, 1, NOW.timestamp()),
    } == plan.cache_entries
    assert (frozenset(), []) == (plan.refused, plan.lifts)


def test_an_opt_in_records_the_programs_basis_and_no_one_else_can_name_it() -> None:
    """START opts in the default program: its ledger evidence names the basis the program's
    sign-up records, even when the message's own evidence claims another; an opt-out's
    evidence carries no basis (docs/rules.md, "Consent duration")."""
    inquiry = dataclasses.replace(
        CATALOG,
        programs=tuple(
            dataclasses.replace(p, basis="implied_inquiry") if p.name == "reminders" else p
            for p in CATALOG.programs
        ),
    )
    start = _event("START", "k1")
    start = dataclasses.replace(
        start,
        catalog=inquiry,
        message=dataclasses.replace(start.message, evidence={"basis": "express_written"}),
    )
    plan, _ = _plan([start])

    assert [("reminders", "opted_in")] == [(r.program, r.new_state) for r in plan.ledger]
    assert '"basis":"implied_inquiry"' in plan.ledger[0].evidence
    assert evidence_digest(plan.ledger[0].evidence) == plan.ledger[0].evidence_sha256
    stop, _ = _plan([_event("STOP", "k2")], {_key("reminders"): (S.OPTED_IN, 1)})
    assert all('"basis"' not in r.evidence for r in stop.ledger)


def test_a_duplicate_or_a_change_to_nothing_writes_nothing() -> None:
    """A redelivery (not inserted now) is not even decided; STOP when already out decides,
    but gives no row of any kind."""
    out = {_key("reminders"): (S.OPTED_OUT, 2), _key("flu"): (S.OPTED_OUT, 1)}
    duplicate, _ = _plan([_event("START", "k1")], duplicates=frozenset({"k1"}))
    unchanged, _ = _plan([_event("STOP", "k2")], out)

    assert {} == duplicate.decisions
    assert "k2" in unchanged.decisions
    for plan in (duplicate, unchanged):
        assert ([], {}, [], [], {}) == (
            plan.ledger,
            plan.consent,
            plan.outbox,
            plan.cancel,
            plan.cache_entries,
        )


def test_someone_elses_capture_for_a_suppressed_address_is_refused() -> None:
    """An opt-in through the API for an erased address is refused: no lift, and nothing for
    the cache (the writer rolls the batch back before Redis is told)."""
    api_opt_in = Intent(IntentKind.OPT_IN, MatchKind.EXACT)
    plan, _ = _plan(
        [_event("", "k1", method=Method.API, intent=api_opt_in)],
        suppressed={"k1": [b"h1"]},
    )
    assert frozenset({"k1"}) == plan.refused
    assert ([], {}) == (plan.lifts, plan.cache_entries)


def test_a_web_form_asking_a_suppressed_address_to_confirm_is_not_refused() -> None:
    """Double opt-in through a web form only asks the person: it may go ahead, without a lift."""
    join_flu = Intent(IntentKind.JOIN, MatchKind.EXACT, program="flu")
    plan, _ = _plan(
        [_event("", "k1", method=Method.WEB_FORM, intent=join_flu)],
        suppressed={"k1": [b"h1"]},
    )
    assert frozenset() == plan.refused
    assert [] == plan.lifts
    assert [("flu", S.PENDING)] == [(c.program, c.state) for c in plan.consent.values()]


def test_the_persons_own_opt_in_lifts_the_suppression() -> None:
    """START from the erased number itself: the suppression is lifted, the ledger evidence
    says so, and the versions start above any the erased contact left in the cache."""
    plan, _ = _plan([_event("START", "k1")], suppressed={"k1": [b"h1", b"h2"]})

    assert frozenset() == plan.refused
    assert [Lift(100, CID, "sms", "12345", "sms_keyword", [b"h1", b"h2"])] == plan.lifts
    assert '"suppression_lifted":"yes"' in plan.ledger[0].evidence
    floor = int(NOW.timestamp() * 1000)
    assert [floor + 1] == [c.version for c in plan.consent.values()]


def test_versions_go_up_by_one_from_what_was_read() -> None:
    plan, recorded = _plan(
        [_event("STOP FLU", "k1")],
        {_key("reminders"): (S.OPTED_IN, 41), _key("flu"): (S.OPTED_IN, 9)},
    )
    assert {_key("flu"): 10} == {k: c.version for k, c in plan.consent.items()}
    # What was read is left as it was: the writer retries a batch with the same reads.
    assert {_key("reminders"): (S.OPTED_IN, 41), _key("flu"): (S.OPTED_IN, 9)} == recorded.states


def test_events_for_one_contact_in_one_batch_chain_like_batches() -> None:
    """START, then STOP, then START in one batch: each is decided on the state the one
    before left; the scope is written once, with the last state and version; the first
    opt-in reply is cancelled by the STOP after it, and the last one is not."""
    plan, _ = _plan([_event("START", "a"), _event("STOP", "b"), _event("START", "c")])

    assert [
        ("reminders", "none", "opted_in", 100),
        ("reminders", "opted_in", "opted_out", 101),
        ("flu", "none", "opted_out", 101),
        ("reminders", "opted_out", "opted_in", 102),
    ] == [(r.program, r.old_state, r.new_state, r.inbound_id) for r in plan.ledger]
    assert {
        _key("reminders"): ConsentRow(*_key("reminders"), S.OPTED_IN, 3, 3, ADDRESS),
        _key("flu"): ConsentRow(*_key("flu"), S.OPTED_OUT, 1, 2, ADDRESS),
    } == plan.consent
    assert [("opt_in", CANCELLED, 100), ("opt_out", QUEUED, 101), ("opt_in", QUEUED, 102)] == [
        (o.kind, o.status, o.inbound_id) for o in plan.outbox
    ]
    first = plan.outbox[0]
    assert (
        OutboxRow(
            "sms", "12345", "reminders", CID, ADDRESS, "opt_in", "en", first.body, 100, CANCELLED
        )
        == first
    )
    assert [3] == [e.version for k, e in plan.cache_entries.items() if k.program == "reminders"]


def test_copies_of_one_message_are_decided_once() -> None:
    """The same dedupe key twice in a batch is one event (the writer answers the copy as a
    duplicate)."""
    plan, _ = _plan([_event("START", "a"), _event("START", "a")])
    assert ["a"] == list(plan.decisions)
    assert 1 == len(plan.ledger)


def test_replies_follow_the_address_as_written_and_can_be_held_back() -> None:
    """Replies go to ``send_to`` when the edge gave one; none when the peer answered itself."""
    event = _event("START", "a")
    spelled = PreparedEvent(event.message, ADDRESS, CATALOG, event.intent, send_to="+1 415 555")
    plan, _ = _plan([spelled])
    assert ["+1 415 555"] == [o.recipient for o in plan.outbox]

    quiet = _event("STOP", "b")
    message = dataclasses.replace(quiet.message, suppress_replies=True)
    plan, _ = _plan([PreparedEvent(message, ADDRESS, CATALOG, quiet.intent)])
    assert ([], 2) == (plan.outbox, len(plan.ledger))


def test_only_events_that_could_give_consent_are_probed() -> None:
    """A STOP is never checked against the suppression list; a START is, under every key."""
    suppression = Suppression([b"k" * 32, b"j" * 32])
    unique = unique_events([_event("STOP", "a"), _event("START", "b"), _event("START", "c")])
    probes, forms = capture_probes(unique, {"a": 1, "b": 2}, suppression)  # c: a duplicate

    hashes = [d for _, d in suppression.digests("sms", ADDRESS)]
    assert [("b", hashes)] == forms
    assert [("sms", d, 0) for d in hashes] == probes


def test_the_inbound_row_records_the_classification() -> None:
    row = inbound_row(_event("STOP please", "a"))
    assert ("a", "sms", ADDRESS, "12345", "sms_keyword") == (
        row.dedupe_key,
        row.channel,
        row.address,
        row.sender,
        row.method,
    )
    assert ("opt_out_all", "leading_word", True) == (row.intent, row.match, row.needs_review)
    assert '{"message_id":"a"}' == row.evidence
