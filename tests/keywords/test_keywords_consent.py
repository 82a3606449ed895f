"""Tests for keywords.consent: the transition table and decide() on the example short code."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from keywords.catalog import SenderCatalog
from keywords.classify import classify
from keywords.consent import TRANSITIONS, decide, transition_table_markdown
from keywords.errors import DecisionError
from keywords.loading import load_sender_file
from keywords.model import (
    Action,
    ConsentState,
    Decision,
    Intent,
    IntentKind,
    MatchKind,
    ReplyKind,
    Transition,
)

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"
CATALOG: SenderCatalog = load_sender_file(CONFIG / "12345.toml")
S = ConsentState


def run(text: str, **states: ConsentState) -> Decision:
    return decide(classify(text, CATALOG), states, CATALOG)


def moves(decision: Decision) -> list[tuple[str, ConsentState, ConsentState, Action]]:
    return [(t.program, t.old, t.new, t.action) for t in decision.transitions]


def replies(decision: Decision) -> list[tuple[ReplyKind, str | None, str]]:
    return [(r.kind, r.program, r.language) for r in decision.replies]


def test_table_is_total() -> None:
    """Every (state, intent) pair has a rule."""
    expected = {(s, i) for s in ConsentState for i in IntentKind}
    assert expected == set(TRANSITIONS)


@pytest.mark.parametrize("state", list(ConsentState))
def test_stop_family_reaches_opted_out_from_every_state(state: ConsentState) -> None:
    """OPT_OUT and OPT_OUT_ALL lead to OPTED_OUT (or stay there) from every state."""
    for intent in (IntentKind.OPT_OUT, IntentKind.OPT_OUT_ALL):
        new = TRANSITIONS[(state, intent)].outcome.new
        assert S.OPTED_OUT == (new or state)


def test_stop_from_nobody_records_suppressions_and_one_reply() -> None:
    """STOP from a stranger opts out every program and sends one sender-wide confirmation."""
    d = run("STOP")
    assert [
        ("reminders", S.NONE, S.OPTED_OUT, Action.OPT_OUT),
        ("flu", S.NONE, S.OPTED_OUT, Action.OPT_OUT),
    ] == moves(d)
    assert [(ReplyKind.OPT_OUT, None, "en")] == replies(d)
    assert d.replies[0].text.startswith("Acme Health: ")


def test_stop_only_changes_programs_not_already_out() -> None:
    """STOP with one program already out moves only the other, with one reply."""
    d = run("stop", reminders=S.OPTED_IN, flu=S.OPTED_OUT)
    assert [("reminders", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT)] == moves(d)
    assert 1 == len(d.replies)


def test_second_stop_is_silent() -> None:
    """CTIA 5.1.3: one final confirmation, then nothing."""
    d = run("STOP", reminders=S.OPTED_OUT, flu=S.OPTED_OUT)
    assert ([], []) == (moves(d), replies(d))


def test_stop_covers_retired_programs_in_states() -> None:
    """A program in the contact's states but gone from the catalog is opted out too."""
    d = run("STOP", reminders=S.OPTED_OUT, flu=S.OPTED_OUT, oldpromo=S.OPTED_IN)
    assert [("oldpromo", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT)] == moves(d)


def test_stop_in_spanish_replies_in_spanish() -> None:
    """ALTO is answered from the Spanish templates."""
    d = run("ALTO", reminders=S.OPTED_IN)
    assert [(ReplyKind.OPT_OUT, None, "es")] == replies(d)


def test_stop_one_program() -> None:
    """STOP FLU leaves flu only, confirmed with the flu title."""
    d = run("STOP FLU", reminders=S.OPTED_IN, flu=S.OPTED_IN)
    assert [("flu", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT)] == moves(d)
    assert [(ReplyKind.OPT_OUT, "flu", "en")] == replies(d)
    assert "Acme Flu Shot Alerts" in d.replies[0].text


def test_stop_one_program_already_out_is_silent() -> None:
    """STOP FLU when flu is already out does nothing."""
    d = run("STOP FLU", flu=S.OPTED_OUT)
    assert ([], []) == (moves(d), replies(d))


def test_start_joins_default_programs() -> None:
    """START joins the default program (reminders), not flu."""
    d = run("START")
    assert [("reminders", S.NONE, S.OPTED_IN, Action.OPT_IN)] == moves(d)
    assert [(ReplyKind.OPT_IN, "reminders", "en")] == replies(d)


def test_start_after_stop_rejoins() -> None:
    """START from OPTED_OUT opts back in."""
    d = run("UNSTOP", reminders=S.OPTED_OUT)
    assert [("reminders", S.OPTED_OUT, S.OPTED_IN, Action.OPT_IN)] == moves(d)


def test_start_when_subscribed_says_already() -> None:
    """START when already in: no transition, an already-subscribed reply."""
    d = run("START", reminders=S.OPTED_IN)
    assert ([], [(ReplyKind.ALREADY_OPTED_IN, "reminders", "en")]) == (moves(d), replies(d))


def test_join_double_opt_in_program_asks_first() -> None:
    """FLU (double opt-in) goes PENDING and asks for YES."""
    d = run("FLU")
    assert [("flu", S.NONE, S.PENDING, Action.PENDING)] == moves(d)
    assert [(ReplyKind.PENDING, "flu", "en")] == replies(d)


def test_join_again_while_pending_asks_again() -> None:
    """FLU while pending: no transition, the ask is repeated."""
    d = run("flu", flu=S.PENDING)
    assert ([], [(ReplyKind.PENDING, "flu", "en")]) == (moves(d), replies(d))


def test_yes_confirms_pending_programs() -> None:
    """YES moves pending programs to OPTED_IN with an opt-in confirmation."""
    d = run("YES", flu=S.PENDING)
    assert [("flu", S.PENDING, S.OPTED_IN, Action.OPT_IN)] == moves(d)
    assert [(ReplyKind.OPT_IN, "flu", "en")] == replies(d)


def test_yes_with_nothing_pending_acts_as_start() -> None:
    """YES with nothing pending joins the default programs."""
    d = run("yes", reminders=S.OPTED_OUT)
    assert [("reminders", S.OPTED_OUT, S.OPTED_IN, Action.OPT_IN)] == moves(d)


@pytest.mark.parametrize("state", list(ConsentState))
def test_help_always_answers_and_changes_nothing(state: ConsentState) -> None:
    """HELP gets the HELP reply, rendered for the default program, from every state."""
    d = run("HELP", reminders=state, flu=state)
    assert ([], [(ReplyKind.HELP, "reminders", "en")]) == (moves(d), replies(d))


def test_unknown_does_nothing() -> None:
    """An unknown text: no transition, no reply."""
    d = run("what time is my appointment?", reminders=S.OPTED_IN)
    assert ([], []) == (moves(d), replies(d))


def test_transitions_are_frozen_values() -> None:
    """Decisions carry Transition values, not dicts."""
    d = run("START")
    assert all(isinstance(t, Transition) for t in d.transitions)


def test_unknown_pair_raises() -> None:
    """A state outside the table raises DecisionError."""
    bogus = cast(ConsentState, "archived")
    with pytest.raises(DecisionError):
        decide(classify("START", CATALOG), {"reminders": bogus}, CATALOG)


def test_opt_out_of_unknown_program_raises() -> None:
    """An OPT_OUT intent naming a program the sender lacks is refused."""
    intent = Intent(IntentKind.OPT_OUT, MatchKind.EXACT, program="nope")
    with pytest.raises(DecisionError):
        decide(intent, {}, CATALOG)


def test_markdown_table_has_a_row_per_state() -> None:
    """The README table has a header, a rule and one row per state."""
    rows = [line for line in transition_table_markdown().splitlines() if line.startswith("|")]
    assert 2 + len(ConsentState) == len(rows)
    assert "| opted_out | unchanged; no reply | unchanged; no reply |" in rows[-1]
