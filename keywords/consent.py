"""Consent decision (pure layer): one transition table and ``decide()``, current state + intent in.

``TRANSITIONS[(state, intent)]`` gives, for one program, the new state (None: unchanged) and
the reply; a ``double_opt_in`` variant replaces it for programs that ask "Reply YES" first.
Which programs an intent touches is ``SCOPES`` (see ``decide``). The README diagram is generated
from the table by ``transition_table_markdown``. The rules:

- OPT_OUT_ALL (STOP): every program of the sender not already OPTED_OUT -> OPTED_OUT, NONE
  included, so a STOP from someone never subscribed is kept as a suppression (ICO: keep
  objectors on a suppression list). One opt-out confirmation for the lot, rendered for the
  whole sender, if anything changed. If everything was already OPTED_OUT: no transition and
  no reply, because CTIA 5.1.3 allows one final confirmation, then nothing (a second STOP
  must not start a conversation). Programs found in ``states`` but no longer in the catalog
  are opted out too: a retired program must not be a way around a STOP.
- OPT_OUT (STOP FLU): that program -> OPTED_OUT with its own confirmation; already out: nothing.
- OPT_IN (START, UNSTOP): every default program -> OPTED_IN with an opt-in confirmation per
  program (double opt-in programs -> PENDING with a "Reply YES" ask instead); a program already
  OPTED_IN gets an "already subscribed" reply and no transition.
- JOIN (FLU): as OPT_IN, for the one program named.
- CONFIRM (YES): PENDING programs -> OPTED_IN with an opt-in confirmation; with nothing
  pending it behaves as OPT_IN over the default programs (YES is in the opt-in family).
- CONFIRM_LINK (a double opt-in confirm link): the program it names, only from PENDING ->
  OPTED_IN with an opt-in confirmation. From any other state nothing changes and nothing is
  sent: the link was mailed for a sign-up that an opt-out, an expiry or an earlier click has
  since closed, and a stale link must neither subscribe anyone nor start a new sign-up. The
  consent state decides under the contact's lock, so a repeated click is a no-op because the
  table says so, not because of a dedupe window.
- HELP: no transition; one HELP reply, subscribed or not (CTIA 5.1.3: short codes answer HELP
  and STOP whether or not the person is subscribed).
- UNKNOWN: nothing, no reply.
- KEEP (``1`` while a keep offer is open): each program the answer picks from the offer,
  OPTED_OUT -> OPTED_IN, with an opt-in confirmation each. The person's own opt-in, by text
  from the number; from any other state nothing changes.

Revoke-all (47 CFR 64.1200(a)(10), docs/rules.md). The caller says whether it is in force for
this event (``decide(..., revoke_all=True)``; the pipeline asks ``rules.revocation`` with the
event's received time): then OPT_OUT (STOP FLU, a one-click or preference-page opt-out of one
program) is decided as OPT_OUT_ALL: every program of the sender, one sender-wide confirmation,
and ``Decision.widened`` so the ledger evidence can say so. That confirmation may offer to
keep the programs the person had (``keywords.keep``, 47 CFR 64.1200(a)(11)); the caller passes
an open offer back in (``offer=``), and a text of numbers only is then KEEP. Without an open
offer such a text is UNKNOWN, as before.

A (state, intent) pair missing from the table raises ``DecisionError``; the table is total over
the enums and a test holds it so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from keywords.catalog import Program, SenderCatalog
from keywords.errors import DecisionError
from keywords.keep import offer_line, offered, picked
from keywords.model import (
    Action,
    ConsentState,
    Decision,
    Intent,
    IntentKind,
    MatchKind,
    Reply,
    ReplyKind,
    Transition,
)
from keywords.replies import render

__all__ = [
    "SCOPES",
    "TRANSITIONS",
    "Outcome",
    "Rule",
    "Scope",
    "decide",
    "transition_table_markdown",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to one program: its new state (None: unchanged) and the reply, if any."""

    new: ConsentState | None = None
    reply: ReplyKind | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """A table cell; ``double_opt_in`` replaces ``outcome`` for double opt-in programs."""

    outcome: Outcome
    double_opt_in: Outcome | None = None

    def for_program(self, program: Program | None) -> Outcome:
        if program is not None and program.double_opt_in and self.double_opt_in is not None:
            return self.double_opt_in
        return self.outcome


class Scope(StrEnum):
    """Which programs an intent applies to, and whether replies are per program or one."""

    ALL = "every program on the sender, one reply"
    NAMED = "the program named in the intent"
    DEFAULTS = "the default programs, a reply each"
    PENDING_ELSE_DEFAULTS = "pending programs, else the default programs"
    SENDER = "no program; one reply if the rule has one"
    OFFERED = "the programs the answer picks from the open keep offer, a reply each"


_S, _I = ConsentState, IntentKind
_OUT = Outcome(_S.OPTED_OUT, ReplyKind.OPT_OUT)
_IN = Outcome(_S.OPTED_IN, ReplyKind.OPT_IN)
_ASK = Outcome(_S.PENDING, ReplyKind.PENDING)
_JOIN = Rule(_IN, double_opt_in=_ASK)
_ALREADY = Rule(Outcome(None, ReplyKind.ALREADY_OPTED_IN))
_NOTHING = Rule(Outcome())
_HELP = Rule(Outcome(None, ReplyKind.HELP))

_ROWS: dict[ConsentState, dict[IntentKind, Rule]] = {
    _S.NONE: {
        _I.OPT_OUT_ALL: Rule(_OUT),  # recorded as a suppression
        _I.OPT_OUT: Rule(_OUT),
        _I.OPT_IN: _JOIN,
        _I.JOIN: _JOIN,
        _I.CONFIRM: _JOIN,  # nothing pending: YES acts as START
        _I.CONFIRM_LINK: _NOTHING,  # no sign-up open: a stale link
        _I.HELP: _HELP,
        _I.UNKNOWN: _NOTHING,
        _I.KEEP: _NOTHING,  # an offer names only programs the person was in
    },
    _S.PENDING: {
        _I.OPT_OUT_ALL: Rule(_OUT),
        _I.OPT_OUT: Rule(_OUT),
        _I.OPT_IN: Rule(_IN, double_opt_in=Outcome(None, ReplyKind.PENDING)),  # ask again
        _I.JOIN: Rule(_IN, double_opt_in=Outcome(None, ReplyKind.PENDING)),
        _I.CONFIRM: Rule(_IN),
        _I.CONFIRM_LINK: Rule(_IN),
        _I.HELP: _HELP,
        _I.UNKNOWN: _NOTHING,
        _I.KEEP: _NOTHING,
    },
    _S.OPTED_IN: {
        _I.OPT_OUT_ALL: Rule(_OUT),
        _I.OPT_OUT: Rule(_OUT),
        _I.OPT_IN: _ALREADY,
        _I.JOIN: _ALREADY,
        _I.CONFIRM: _ALREADY,
        _I.CONFIRM_LINK: _NOTHING,  # already confirmed: the page says so, no second mail
        _I.HELP: _HELP,
        _I.UNKNOWN: _NOTHING,
        _I.KEEP: _NOTHING,  # already back in: nothing to keep
    },
    _S.OPTED_OUT: {
        _I.OPT_OUT_ALL: _NOTHING,  # CTIA 5.1.3: one final confirmation, then nothing
        _I.OPT_OUT: _NOTHING,
        _I.OPT_IN: _JOIN,
        _I.JOIN: _JOIN,
        _I.CONFIRM: _JOIN,
        _I.CONFIRM_LINK: _NOTHING,  # left since the link was mailed: it no longer applies
        _I.HELP: _HELP,
        _I.UNKNOWN: _NOTHING,
        # Straight to opted_in, double opt-in or not: the person had confirmed the program
        # before the widened opt-out, and the answer names it.
        _I.KEEP: Rule(_IN),
    },
}

TRANSITIONS: Mapping[tuple[ConsentState, IntentKind], Rule] = MappingProxyType(
    {(state, intent): rule for state, row in _ROWS.items() for intent, rule in row.items()}
)

SCOPES: Mapping[IntentKind, Scope] = MappingProxyType(
    {
        _I.OPT_OUT_ALL: Scope.ALL,
        _I.OPT_OUT: Scope.NAMED,
        _I.OPT_IN: Scope.DEFAULTS,
        _I.JOIN: Scope.NAMED,
        _I.CONFIRM: Scope.PENDING_ELSE_DEFAULTS,
        _I.CONFIRM_LINK: Scope.NAMED,
        _I.HELP: Scope.SENDER,
        _I.UNKNOWN: Scope.SENDER,
        _I.KEEP: Scope.OFFERED,
    }
)

_ACTIONS = {_S.OPTED_IN: Action.OPT_IN, _S.OPTED_OUT: Action.OPT_OUT, _S.PENDING: Action.PENDING}


def _rule(state: ConsentState, intent: IntentKind) -> Rule:
    try:
        return TRANSITIONS[(state, intent)]
    except KeyError:
        raise DecisionError(f"no transition for state {state!r} on intent {intent!r}") from None


def _targets(
    intent: Intent,
    states: Mapping[str, ConsentState],
    catalog: SenderCatalog,
    scope: Scope | None,
    offer: tuple[str, ...],
) -> list[str]:
    if scope is None:
        raise DecisionError(f"no scope for intent {intent.kind!r}")
    if scope is Scope.OFFERED:
        return list(picked(intent.choices, offer))
    names = [p.name for p in catalog.programs]
    if scope is Scope.ALL:
        return names + sorted(n for n in states if n not in names)
    if scope is Scope.NAMED:
        if intent.program is None or not catalog.has_program(intent.program):
            raise DecisionError(f"{intent.kind} names no program of {catalog.sender}")
        return [intent.program]
    defaults = [p.name for p in catalog.default_programs]
    if scope is Scope.PENDING_ELSE_DEFAULTS:
        pending = [n for n in names if states.get(n, _S.NONE) is _S.PENDING]
        return pending or defaults
    return defaults if scope is Scope.DEFAULTS else []


def decide(
    intent: Intent,
    states: Mapping[str, ConsentState],
    catalog: SenderCatalog,
    *,
    revoke_all: bool = False,
    offer: tuple[str, ...] = (),
) -> Decision:
    """The transitions and replies ``intent`` causes, given the contact's state per program.

    ``states`` maps program names on this sender to the contact's state; missing means NONE.
    ``revoke_all``: revoke-all is in force for this event, so an OPT_OUT is every program's.
    ``offer``: the programs of the person's open keep offer, by number (none: no offer).
    """
    if intent.kind is IntentKind.UNKNOWN and picked(intent.choices, offer):
        # Only now is a number an answer: the offer is open (keywords/keep.py).
        intent = Intent(
            IntentKind.KEEP,
            MatchKind.EXACT,
            intent.language,
            keyword=" ".join(str(n) for n in intent.choices),
            choices=intent.choices,
        )
    widened = revoke_all and intent.kind is IntentKind.OPT_OUT
    # A widened opt-out is decided as STOP is: same table column, same scope, one reply.
    kind = IntentKind.OPT_OUT_ALL if widened else intent.kind
    scope = SCOPES.get(kind)
    if scope is Scope.SENDER:
        # HELP and UNKNOWN touch no program; the rule is the same from every state.
        # HELP is rendered with the default program's fields (its title, frequency, contact).
        default = catalog.default_programs[0]
        outcome = _rule(states.get(default.name, _S.NONE), intent.kind).outcome
        replies = (
            ()
            if outcome.reply is None
            else (render(catalog, outcome.reply, intent.language, default),)
        )
        return Decision(intent=intent, replies=replies)
    transitions: list[Transition] = []
    replies_: list[Reply] = []
    for name in _targets(intent, states, catalog, scope, offer):
        old = states.get(name, _S.NONE)
        program = catalog.program(name) if catalog.has_program(name) else None
        outcome = _rule(old, kind).for_program(program)
        if outcome.new is not None and outcome.new is not old:
            transitions.append(Transition(name, old, outcome.new, _ACTIONS[outcome.new]))
        if outcome.reply is not None and scope is not Scope.ALL:
            replies_.append(render(catalog, outcome.reply, intent.language, program))
    kept: tuple[str, ...] = ()
    if scope is Scope.ALL and transitions:
        # One confirmation for the whole sender (FCC 24-24: one confirmation text).
        reply = render(catalog, ReplyKind.OPT_OUT, intent.language, None)
        if widened:
            # 47 CFR 64.1200(a)(11): the one confirmation may ask which programs to keep.
            kept = offered(catalog, intent.program, states, reply.language)
            if kept:
                text = f"{reply.text} {offer_line(catalog, kept, reply.language)}"
                reply = Reply(reply.kind, reply.language, text, reply.program)
        replies_.append(reply)
    return Decision(
        intent=intent,
        transitions=tuple(transitions),
        replies=tuple(replies_),
        widened=widened,
        offer=kept,
    )


def _cell(outcome: Outcome) -> str:
    state = outcome.new.value if outcome.new else "unchanged"
    return f"{state}; reply {outcome.reply.value}" if outcome.reply else f"{state}; no reply"


def transition_table_markdown() -> str:
    """The table as Markdown (rows: states, columns: intents), for the README."""
    intents = list(IntentKind)
    lines = [
        "| state \\ intent | " + " | ".join(i.value for i in intents) + " |",
        "|---" * (len(intents) + 1) + "|",
    ]
    for state in ConsentState:
        cells = []
        for intent in intents:
            rule = _rule(state, intent)
            cell = _cell(rule.outcome)
            if rule.double_opt_in is not None:
                cell += f" (double opt-in: {_cell(rule.double_opt_in)})"
            cells.append(cell)
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- `{intent.value}`: {scope.value}" for intent, scope in SCOPES.items()]
    return "\n".join(lines) + "\n"
