"""Keyword classification (pure layer): one inbound text and a sender catalog in, an Intent out.

Rules, first match wins (all on the normalized text, see ``keywords.normalize``):

1. EXACT: the whole text is a catalog keyword (``STOP``, ``Stop!``, ``ＳＴＯＰ``, ``START``,
   ``FLU``) or an opt-out word followed by a program name or keyword (``STOP FLU``: leave
   that program only).
2. LEADING_WORD: the text *begins with* an opt-out word (``STOP please``); Twilio's short-code
   rule and CTIA 5.1.3 treat it as a full opt-out. If the next word names a program it is an
   opt-out of that program (``stop flu please``).
3. LEADING_WORD: the first word is an opt-out word glued to more letters (``STOPNEWS``,
   ``STOPFLU``, a missing space); a remainder naming a program targets that program.
4. PHRASE: a plain-language revocation anywhere (``please stop texting me``, ``no more
   texts``, ``darme de baja``); FCC 24-24: revocation "by any reasonable means".
5. PHRASE: any opt-out word next to an opt-in word (``yes cancel``): the opt-out wins.
6. LEADING_WORD: the text begins with a help word (``help me``).
7. Otherwise UNKNOWN (MatchKind.NONE). A text of numbers only (``1``, ``1 2``, ``1, 2``)
   carries them in ``Intent.choices``: it is still UNKNOWN, and only ``decide`` reads it as
   the answer to an open keep offer (keywords/consent.py, revoke-all).

Everything from rule 2 on is flagged ``needs_review``. An inexact text is never an opt-in: opt-in,
join and confirm come from rule 1 only, and the catalog refuses opt-in keywords that would read
as an opt-out, so an opt-out word can never be matched as part of one.

Look-alikes: when the normalized text is not an opt-out, the rules run again on each of its
look-alike readings (``keywords.normalize.lookalikes``: Cyrillic ``ЅТОР``, Greek ``ΗΕLΡ``, a
zero-width space read as a space). An opt-out found there is the answer, flagged
``needs_review`` (a reviewer sees the look-alike spelling); a help word is the answer only if
the text meant nothing else. Nothing else is taken from a reading, so a look-alike never makes
an opt-in, a join or a confirmation, and a text in another script keeps its own meaning
(Russian ``СТОП`` is a revocation of its own, ``keywords.reserved``).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from keywords.catalog import Keyword, SenderCatalog
from keywords.keep import MAX_OFFER
from keywords.model import Intent, IntentKind, MatchKind
from keywords.normalize import lookalikes, normalize
from keywords.reserved import GLUED_EXCEPTIONS, revocation

__all__ = ["classify"]

_OPT_OUTS = frozenset({IntentKind.OPT_OUT, IntentKind.OPT_OUT_ALL})


def _intent(k: Keyword, match: MatchKind, *, program: str | None = None) -> Intent:
    target = program or k.program
    kind = IntentKind.OPT_OUT if target and k.kind is IntentKind.OPT_OUT_ALL else k.kind
    return Intent(
        kind=kind,
        match=match,
        language=k.language,
        program=target,
        keyword=k.normalized,
        # A leading or phrase opt-out is acted on at once but a human should look (FCC 24-24
        # lets the confirmation ask which programs to stop); "help me" needs no one.
        needs_review=match is not MatchKind.EXACT and kind is not IntentKind.HELP,
    )


def _leading_opt_out(parts: list[str], catalog: SenderCatalog) -> Intent | None:
    index = catalog.index
    for n in range(min(index.opt_out_max_words, len(parts)), 0, -1):
        k = index.opt_out.get(" ".join(parts[:n]))
        if k is None:
            continue
        rest = parts[n:]
        program = (
            (index.targets.get(" ".join(rest)) or index.targets.get(rest[0])) if rest else None
        )
        return _intent(k, MatchKind.LEADING_WORD, program=program)
    return None


def _glued_opt_out(first: str, catalog: SenderCatalog) -> Intent | None:
    if first in GLUED_EXCEPTIONS:
        return None
    for k in catalog.index.glued:  # longest first: STOPALLNEWS is STOPALL + NEWS
        if first.startswith(k.normalized) and first[len(k.normalized) :].isalpha():
            program = catalog.index.targets.get(first[len(k.normalized) :])
            return _intent(k, MatchKind.LEADING_WORD, program=program)
    return None


def _mixed(parts: list[str], catalog: SenderCatalog) -> Keyword | None:
    index = catalog.index
    if not any(w in index.opt_in_words for w in parts):
        return None
    spans = parts + [f"{a} {b}" for a, b in pairwise(parts)]
    return next((index.opt_out[s] for s in spans if s in index.opt_out), None)


def classify(text: str, catalog: SenderCatalog) -> Intent:
    """Classify one text sent to ``catalog``'s sender (never raises on any ``str``)."""
    intent = _rules(normalize(text), catalog)
    if intent.kind in _OPT_OUTS:
        return intent
    for reading in lookalikes(text):
        other = _rules(reading, catalog)
        if other.kind in _OPT_OUTS:
            return replace(other, needs_review=True)
        if other.kind is IntentKind.HELP and intent.kind is IntentKind.UNKNOWN:
            intent = other  # keep looking: an opt-out in a later reading still wins
    return intent


def _rules(normalized: str, catalog: SenderCatalog) -> Intent:
    """Rules 1-7 of the module docstring over one normalized reading."""
    if not normalized:
        return Intent(IntentKind.UNKNOWN, MatchKind.NONE, language=catalog.default_language)
    exact = catalog.index.exact.get(normalized)
    if exact is not None:
        return _intent(exact, MatchKind.EXACT)
    parts = normalized.split(" ")
    found = _leading_opt_out(parts, catalog) or _glued_opt_out(parts[0], catalog)
    if found is not None:
        return found
    phrase = revocation(normalized)
    if phrase is not None:
        language, matched = phrase
        return Intent(
            IntentKind.OPT_OUT_ALL, MatchKind.PHRASE, language, keyword=matched, needs_review=True
        )
    mixed = _mixed(parts, catalog)
    if mixed is not None:
        return _intent(mixed, MatchKind.PHRASE)
    helper = catalog.index.help.get(parts[0])
    if helper is not None:
        return _intent(helper, MatchKind.LEADING_WORD)
    return Intent(
        IntentKind.UNKNOWN,
        MatchKind.NONE,
        language=catalog.default_language,
        choices=_choices(parts),
    )


def _choices(parts: list[str]) -> tuple[int, ...]:
    """The numbers of a text made of numbers only, else none. An offer numbers at most
    ``MAX_OFFER`` programs, so a longer number or list is no answer to one."""
    if len(parts) > MAX_OFFER or not all(w.isdecimal() and len(w) <= 2 for w in parts):
        return ()
    return tuple(int(w) for w in parts)
