"""Tests for revoke-all in the consent table: a widened opt-out, its keep offer and the answer.

47 CFR 64.1200(a)(10) and (a)(11); docs/rules.md, "Revoke-all"; keywords/keep.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keywords.catalog import SenderCatalog
from keywords.classify import classify
from keywords.consent import decide
from keywords.errors import CatalogError
from keywords.keep import MAX_OFFER, picked
from keywords.loading import load_sender_file
from keywords.model import Action, ConsentState, Decision, IntentKind, ReplyKind
from keywords.schema import parse_sender
from keywords.segments import segments

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"
CATALOG: SenderCatalog = load_sender_file(CONFIG / "12345.toml")
S = ConsentState
BOTH_IN = {"reminders": S.OPTED_IN, "flu": S.OPTED_IN}
BOTH_OUT = {"reminders": S.OPTED_OUT, "flu": S.OPTED_OUT}


def run(
    text: str,
    states: dict[str, ConsentState],
    *,
    revoke_all: bool = False,
    offer: tuple[str, ...] = (),
) -> Decision:
    return decide(classify(text, CATALOG), states, CATALOG, revoke_all=revoke_all, offer=offer)


def moves(decision: Decision) -> list[tuple[str, ConsentState, ConsentState, Action]]:
    return [(t.program, t.old, t.new, t.action) for t in decision.transitions]


def test_stop_flu_before_revoke_all_stops_flu_only() -> None:
    """Not in force: STOP FLU is what it was, one program and its own confirmation."""
    d = run("STOP FLU", BOTH_IN)
    assert [("flu", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT)] == moves(d)
    assert not d.widened
    assert () == d.offer
    assert [(ReplyKind.OPT_OUT, "flu")] == [(r.kind, r.program) for r in d.replies]


def test_stop_flu_under_revoke_all_stops_every_program_with_one_offer() -> None:
    """In force: every program, one sender-wide confirmation offering what the person had."""
    d = run("STOP FLU", BOTH_IN, revoke_all=True)
    assert [
        ("reminders", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT),
        ("flu", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT),
    ] == moves(d)
    assert d.widened
    assert IntentKind.OPT_OUT == d.intent.kind
    assert "flu" == d.intent.program
    assert ("reminders",) == d.offer
    (reply,) = d.replies
    assert ReplyKind.OPT_OUT == reply.kind
    assert reply.program is None
    assert reply.text == (
        "Acme Health: You're unsubscribed and will get no more msgs. Reply START to rejoin,"
        " HELP for help. Reply 1 to keep Acme Health Reminders."
    )
    assert 1 == segments(reply.text)  # one message (FCC 24-24)


@pytest.mark.parametrize("text", ["STOPFLU", "stop flu please", "ALTO GRIPE"])
def test_every_opt_out_naming_a_program_is_widened(text: str) -> None:
    """The glued, leading-word and Spanish spellings of STOP FLU widen alike."""
    d = run(text, BOTH_IN, revoke_all=True)
    assert {"reminders", "flu"} == {t.program for t in d.transitions}
    assert d.widened
    assert 1 == len(d.replies)


def test_a_decided_opt_out_of_one_program_is_widened() -> None:
    """An edge's own opt-out of one program (one-click, preference page) widens too."""
    intent = classify("STOP FLU", CATALOG)  # the same Intent the edges build, kind and program
    d = decide(intent, {"reminders": S.PENDING, "flu": S.OPTED_IN}, CATALOG, revoke_all=True)
    assert [("reminders", S.PENDING), ("flu", S.OPTED_IN)] == [
        (t.program, t.old) for t in d.transitions
    ]
    assert () == d.offer  # only programs the person was in are offered back


def test_widened_opt_out_of_someone_in_only_the_named_program_offers_nothing() -> None:
    """Nothing else to keep: the confirmation says everything stopped and asks nothing."""
    d = run("STOP FLU", {"flu": S.OPTED_IN}, revoke_all=True)
    assert {"reminders", "flu"} == {t.program for t in d.transitions}
    assert () == d.offer
    assert "Reply 1" not in d.replies[0].text


def test_plain_stop_never_offers() -> None:
    """STOP asked for everything: no clarification to seek (47 CFR 64.1200(a)(11))."""
    d = run("STOP", BOTH_IN, revoke_all=True)
    assert not d.widened
    assert () == d.offer
    assert "Reply 1" not in d.replies[0].text


def test_widened_opt_out_when_everything_is_out_is_silent() -> None:
    """CTIA 5.1.3: one confirmation, then nothing, widened or not."""
    d = run("STOP FLU", BOTH_OUT, revoke_all=True)
    assert () == d.transitions
    assert () == d.replies


def test_widened_opt_out_when_only_the_named_program_was_out() -> None:
    """FLU out already, reminders in: the widened opt-out still stops reminders, and says so."""
    d = run("STOP FLU", {"reminders": S.OPTED_IN, "flu": S.OPTED_OUT}, revoke_all=True)
    assert [("reminders", S.OPTED_IN, S.OPTED_OUT, Action.OPT_OUT)] == moves(d)
    assert ("reminders",) == d.offer
    assert 1 == len(d.replies)


def test_answer_keeps_the_program_it_names() -> None:
    """ "1" with the offer open: the person's own opt-in to reminders, with its confirmation."""
    d = run("1", BOTH_OUT, offer=("reminders",))
    assert IntentKind.KEEP == d.intent.kind
    assert "1" == d.intent.keyword
    assert [("reminders", S.OPTED_OUT, S.OPTED_IN, Action.OPT_IN)] == moves(d)
    assert [(ReplyKind.OPT_IN, "reminders")] == [(r.kind, r.program) for r in d.replies]


def test_answer_keeps_a_double_opt_in_program_without_asking_again() -> None:
    """The person had confirmed flu before the opt-out: keeping it needs no second YES."""
    d = run("1", BOTH_OUT, offer=("flu",))
    assert [("flu", S.OPTED_OUT, S.OPTED_IN, Action.OPT_IN)] == moves(d)


@pytest.mark.parametrize("text", ["1", " 1. ", "１"])
def test_digit_with_no_open_offer_is_what_it_is_today(text: str) -> None:
    """No offer: an unknown text, no change and no reply (revoke-all in force or not)."""
    for revoke_all in (False, True):
        d = run(text, BOTH_OUT, revoke_all=revoke_all)
        assert IntentKind.UNKNOWN == d.intent.kind
        assert () == d.transitions
        assert () == d.replies


@pytest.mark.parametrize("text", ["2", "0", "1 2", "1 please", "one", "11"])
def test_anything_but_numbers_of_the_offer_is_no_answer(text: str) -> None:
    """Everything stays stopped unless the answer names offered programs only."""
    d = run(text, BOTH_OUT, offer=("reminders",))
    assert IntentKind.KEEP != d.intent.kind
    assert () == d.transitions


def test_answer_may_name_several_programs() -> None:
    """ "1 2" and "1, 2" keep both offered programs, a confirmation each; a repeat counts once."""
    assert ("a", "b") == picked((1, 2), ("a", "b"))
    assert ("b",) == picked((2, 2), ("a", "b"))
    assert () == picked((1, MAX_OFFER + 1), ("a", "b"))
    d = run("1, 2", BOTH_OUT, offer=("reminders", "flu"))
    assert {"reminders", "flu"} == {t.program for t in d.transitions if t.new is S.OPTED_IN}
    assert 2 == len(d.replies)


def test_answer_after_rejoining_changes_nothing() -> None:
    """A program back in since the offer (START): nothing to keep, no reply."""
    d = run("1", {"reminders": S.OPTED_IN, "flu": S.OPTED_OUT}, offer=("reminders",))
    assert IntentKind.KEEP == d.intent.kind
    assert () == d.transitions
    assert () == d.replies


def test_offer_is_in_the_confirmation_language() -> None:
    """Spanish STOP (ALTO) of one program: the Spanish confirmation, the Spanish offer."""
    (reply,) = run("ALTO GRIPE", BOTH_IN, revoke_all=True).replies
    assert "es" == reply.language
    assert reply.text.endswith("Responde 1 para seguir en Recordatorios Acme Health.")


def _sender(keep_offer: str | None, *, channel: str = "sms") -> dict[str, object]:
    sms = channel == "sms"
    program = {
        "title": "News",
        "description": "news",
        "frequency": "weekly",
        "help_contact": "help@acme.example",
        "privacy_url": "acme.example/p",
        "terms_url": "acme.example/t",
        "default": True,
    }
    templates = {
        "help": "{program}: help at {help_contact}.",
        "opt_in": "{program}: joined. {frequency}.",
        "opt_out": "{program}: no more msgs.",
        "already_opted_in": "{program}: already in.",
    }
    if keep_offer is not None:
        templates["keep_offer"] = keep_offer
    return {
        "sender": "55555" if sms else "news@lists.acme.example",
        "kind": "short_code" if sms else "email_list",
        "channel": channel,
        "brand": "Acme",
        "default_language": "en",
        "programs": {"news": program, "deals": {**program, "default": False}},
        "templates": {"en": templates},
    }


def test_sender_without_keep_offer_template_makes_no_offer() -> None:
    """The offer is the sender's choice: no keep_offer template, no offer."""
    catalog = parse_sender(_sender(None), "55555.toml")
    intent = classify("STOP DEALS", catalog)
    d = decide(intent, {"news": S.OPTED_IN, "deals": S.OPTED_IN}, catalog, revoke_all=True)
    assert d.widened
    assert 2 == len(d.transitions)
    assert () == d.offer


@pytest.mark.parametrize(
    ("keep_offer", "channel", "message"),
    [
        ("Reply to keep {program}.", "sms", "must say which number to reply ({number})"),
        ("Reply {number} for {nope}.", "sms", "unknown placeholder {nope}"),
        ("Reply {number} to keep {program}.", "email", "only an SMS sender can offer"),
    ],
)
def test_keep_offer_template_is_checked_at_load(
    keep_offer: str, channel: str, message: str
) -> None:
    """A keep_offer line must name the number; no other template may use {number}."""
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sender(_sender(keep_offer, channel=channel), "sender.toml")


def test_number_placeholder_only_in_keep_offer() -> None:
    """{number} in any other template is refused, so no reply renders it by accident."""
    data = _sender(None)
    templates = data["templates"]
    assert isinstance(templates, dict)
    templates["en"]["help"] = "{program}: reply {number}."
    with pytest.raises(CatalogError, match="unknown placeholder"):
        parse_sender(data, "55555.toml")
