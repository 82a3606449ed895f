"""Reserved keywords and revocation phrases (pure layer): what every sender honours, always.

Design invariant 6: STOP and HELP cannot be configured away. Operators may add words to these
families in their sender file, never remove one of these.

- Opt-out: the FCC 24-24 per-se-valid words (stop, quit, end, revoke, opt out, cancel,
  unsubscribe; 47 CFR 64.1200(a)(10)), the carrier set (STOPALL) and the provider spellings
  (OPTOUT, OPT-OUT); ALTO/PARAR/CANCELAR for Spanish programs and ARRET for Canadian French.
- Opt-in: START, UNSTOP; YES confirms a pending double opt-in and, from no consent, opts in.
- Help: HELP, INFO, AYUDA, AIDE. Short codes must answer these whether or not the person is
  subscribed (CTIA Messaging Principles 5.1.3).

Plain-language revocations (``revocation``) also cover Russian: ``стоп`` and the verb
``отписаться`` (unsubscribe) in its forms, with any of their letters written as the Latin
letter it looks like (``CTOП`` mixes Latin C, T and O with Cyrillic П). No sender has Russian
templates by default, so the reply to one comes in the sender's default language
(``SenderCatalog.template`` falls back to it); a sender that adds ``[templates.ru]`` answers
in Russian. The intent keeps the language ``ru`` either way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from keywords.confusables import PROTOTYPES
from keywords.model import IntentKind

__all__ = ["FAMILIES", "GLUED_EXCEPTIONS", "RESERVED", "revocation"]

# TOML family name (keywords.<lang>.<family>) -> the intent a word in it means.
FAMILIES: Mapping[str, IntentKind] = MappingProxyType(
    {
        "opt_out": IntentKind.OPT_OUT_ALL,
        "opt_in": IntentKind.OPT_IN,
        "confirm": IntentKind.CONFIRM,
        "help": IntentKind.HELP,
    }
)

# (language, family, words): language decides which templates answer the word.
RESERVED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "en",
        "opt_out",
        (
            "STOP",
            "STOPALL",
            "STOP ALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "REVOKE",
            "OPTOUT",
            "OPT OUT",
            "OPT-OUT",
        ),
    ),
    ("en", "opt_in", ("START", "UNSTOP")),
    ("en", "confirm", ("YES",)),
    ("en", "help", ("HELP", "INFO")),
    ("es", "opt_out", ("ALTO", "PARAR", "CANCELAR")),
    ("es", "help", ("AYUDA",)),
    ("fr", "opt_out", ("ARRET", "ARRÊT")),
    ("fr", "help", ("AIDE",)),
)

# Common words that merely begin with an opt-out word ("quite" starts with "quit", and a health
# brand hears "endocrinology" daily). The glued-prefix rule (STOPNEWS) skips exactly these; the
# list is short on purpose because a missed STOP is the worse error (carrier severity 0).
GLUED_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "quite",
        "ending",
        "endless",
        "endure",
        "endorse",
        "endoscopy",
        "endocrinology",
        "endocrinologist",
        "endometriosis",
    }
)


def _latin_lookalike(word: str) -> str:
    """A pattern for a normalized non-Latin ``word`` in which a letter may be its Latin twin.

    ``стоп`` gives ``[cс][tт][oо]п``: the Cyrillic letter, or the Latin letter that it or its
    capital is drawn like (``keywords.confusables``), case-folded as normalized text is.
    """
    parts = []
    for letter in word:
        twins = {
            PROTOTYPES[form].casefold() for form in (letter, letter.upper()) if form in PROTOTYPES
        }
        parts.append(f"[{''.join(sorted(twins | {letter}))}]" if twins else re.escape(letter))
    return "".join(parts)


# Plain-language revocations over *normalized* text (lower case, no accents, apostrophes
# dropped, punctuation turned into single spaces). FCC 24-24 (47 CFR 64.1200(a)(10)) lets a
# consumer revoke "by any reasonable means" and CTIA 5.1.3 asks that "please opt me out" be
# acted on, so these are opt-outs of everything on the sender, flagged for human review.
_PHRASES: tuple[tuple[str, str], ...] = (
    # "stop" anywhere ("please stop", "yes stop", "START STOP"): the opt-out wins a mixed text.
    ("en", r"\bstop(?:all)?\b"),
    ("en", r"\bunsubscribe\b|\bunsub\b|\brevoke\b|\boptout\b|\bopt (?:me )?out\b"),
    ("en", r"\bremove (?:me|us|my (?:number|phone|name|email|info|details))\b"),
    ("en", r"\btake (?:me|us|my number) off\b"),
    ("en", r"\bno more (?:texts?|txts?|messages?|msgs?|sms|emails?|mails?|alerts?)\b"),
    ("en", r"\b(?:dont|do not|never) (?:text|txt|message|msg|sms|email|contact)(?:ing)? me\b"),
    ("en", r"\bleave me alone\b"),
    ("es", r"\bdar(?:me)? de baja\b|\bdame de baja\b"),
    ("es", r"\bno (?:me )?(?:envien|envies|mandes|manden|escriban|escribas)\b"),
    ("es", r"\bno (?:quiero )?mas (?:mensajes|msj|sms|textos|correos)\b"),
    ("fr", r"\bdesabonn\w*|\bdesinscri\w*"),
    ("fr", r"\bne (?:m)?(?:envoy|ecriv|contact)\w* plus\b|\bne plus recevoir\b"),
    ("fr", r"\bplus de (?:messages|sms|textos|courriels)\b"),
    # "стоп" (stop) and "отписаться" (unsubscribe: отпишите, отписка); normalization has
    # already folded case and dropped the marks of й and ё.
    ("ru", rf"\b{_latin_lookalike('стоп')}\b"),
    ("ru", rf"\b{_latin_lookalike('отпи')}[cсш]\w*"),
)
_REVOCATION = re.compile("|".join(f"(?P<{lang}{i}>{rx})" for i, (lang, rx) in enumerate(_PHRASES)))


def revocation(normalized: str) -> tuple[str, str] | None:
    """Return (language, matched phrase) if a normalized text is a plain-language opt-out."""
    found = _REVOCATION.search(normalized)
    if found is None or found.lastgroup is None:
        return None
    return found.lastgroup.rstrip("0123456789"), found.group(0)
