"""The keep offer (pure layer): after revoke-all widened an opt-out, which programs to offer back.

47 CFR 64.1200(a)(10) makes an opt-out of one program of a sender an opt-out of every
program (docs/rules.md, "Revoke-all"); (a)(11) lets the one confirmation ask, once, which
programs the person wants to keep. The gateway asks only when the scope was unclear: an
opt-out that named one program ("STOP FLU") and was widened. A plain STOP asked for
everything, and its confirmation asks nothing.

- **What is offered.** The sender's programs, in the order of its sender file, that the
  person was ``opted_in`` to just before the opt-out, other than the program named: keeping
  a program restores what the person had; offering one they never joined would turn the
  confirmation into an invitation (and an opt-out confirmation must carry no marketing,
  docs/DESIGN.md invariant 5). At most ``MAX_OFFER`` programs, so an answer is one digit each.
- **When.** Only for an SMS sender whose sender file has a ``keep_offer`` template in the
  language the confirmation is written in (keywords/schema.py); without one, the confirmation
  says every program stopped and nothing more.
- **How long.** ``OFFER_SECONDS`` (24 hours) from the opt-out, and only until the next
  consent change of that person on that sender (the answer itself, a START, another opt-out).
  A stray "1" a day later, or after anything else has happened, is read as it is today: no
  change, no reply. A day leaves time to answer a text read late and is short enough that a
  number sent for another reason is not taken as consent.
- **The answer** is a text of numbers only ("1", "1 2"), all of them numbers of the offer;
  anything else is no answer, and everything stays stopped.
"""

from __future__ import annotations

from collections.abc import Mapping

from keywords.catalog import SenderCatalog
from keywords.model import Channel, ConsentState, ReplyKind
from keywords.replies import render

__all__ = ["MAX_OFFER", "OFFER_SECONDS", "offer_line", "offered", "picked"]

MAX_OFFER = 9
OFFER_SECONDS = 24 * 3600


def offered(
    catalog: SenderCatalog,
    named: str | None,
    before: Mapping[str, ConsentState],
    language: str,
) -> tuple[str, ...]:
    """The programs a widened opt-out of ``named`` offers to keep, given the states
    ``before`` it; none when the sender makes no offer in ``language``."""
    if catalog.channel is not Channel.SMS or not _has_line(catalog, language):
        return ()
    names = [
        p.name
        for p in catalog.programs
        if p.name != named and before.get(p.name) is ConsentState.OPTED_IN
    ]
    return tuple(names[:MAX_OFFER])


def offer_line(catalog: SenderCatalog, offer: tuple[str, ...], language: str) -> str:
    """The text added to the confirmation: the ``keep_offer`` line of each program, numbered."""
    return " ".join(
        render(catalog, ReplyKind.KEEP_OFFER, language, catalog.program(name), number).text
        for number, name in enumerate(offer, start=1)
    )


def picked(choices: tuple[int, ...], offer: tuple[str, ...]) -> tuple[str, ...]:
    """The programs an answer of ``choices`` keeps from ``offer``; none if it is no answer."""
    if not choices or not offer or not all(1 <= n <= len(offer) for n in choices):
        return ()
    return tuple(dict.fromkeys(offer[n - 1] for n in choices))


def _has_line(catalog: SenderCatalog, language: str) -> bool:
    # The line must be in the confirmation's own language: the default language's line in
    # a Spanish confirmation would make one text of two languages.
    found = catalog.template(language, ReplyKind.KEEP_OFFER)
    return found is not None and found[0] == language
