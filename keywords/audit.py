"""Carrier-audit lint (pure layer): what a CTIA audit (via WMC Global) would flag in a catalog.

Auditors text the program as a consumer would and read the replies, so every check runs on
the RENDERED text (placeholders filled), per language and per program. Errors are what fails an
audit; warnings cost money or goodwill (an SMS reply over one segment is billed twice).

- HELP (CTIA 5.1.3): names the program or brand and gives a contact (error); message
  frequency, "Msg&data rates may apply" and STOP instructions are expected too (warning).
- Opt-in confirmation: frequency, "Msg & data rates may apply", STOP and HELP instructions,
  privacy and terms links (errors).
- Opt-out confirmation: says no more messages will be sent (error; design invariant 5);
  names the program or brand and says how to resume (warnings).
- SMS senders: replies over one segment (GSM 03.38 / UCS-2) are warnings.

Email-list senders skip the SMS-only rules: segments, "Msg&data rates", STOP/HELP keywords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from keywords.catalog import Program, SenderCatalog
from keywords.model import Channel, IntentKind, ReplyKind
from keywords.normalize import normalize
from keywords.replies import render
from keywords.segments import segments

__all__ = ["Finding", "audit"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One audit finding, naming the sender file and the template key at fault."""

    severity: Severity
    sender: str
    source: str
    key: str
    message: str


# All patterns run on normalized text: lower case, no accents, punctuation turned into spaces,
# so "Msg&data rates may apply" and "MSG & Data rates may apply." both read "msg data rates...".
_RATES = re.compile(
    r"\b(?:msg|msgs|message|messages)(?: and)? data rates (?:may|might|can) apply\b"
    r"|\b(?:tarifas|cargos)\b.*\bdatos\b"  # es: "pueden aplicar tarifas de msj y datos"
    r"|\b(?:frais|tarifs)\b.*\bdonnees\b"  # fr: "des frais de msg et donnees peuvent s'appliquer"
)
_FREQUENCY = re.compile(
    r"\b(?:msgs?|messages?|msj|mensajes?|sms|texts?|emails?|courriels?)"
    r" (?:per |a |al |por |par |each |every |/ )?"
    r"(?:day|week|wk|month|mo|dia|semana|mes|jour|semaine|mois)\b"
    r"|\brecurring\b|\brecurrentes?\b|\brecurrents?\b"
)
_NO_MORE = re.compile(
    r"\bno (?:more|further|additional|other)\b"
    r"|\b(?:will not|wont|will no longer|no longer) (?:receive|get|be sent|send|text)\b"
    r"|\bno (?:\w+ ){0,2}mas\b|\bya no\b"  # es: "no recibiras mas mensajes"
    r"|\bne (?:\w+ ){0,2}plus\b|\bplus aucun"  # fr: "vous ne recevrez plus de messages"
)
_CONTACT = re.compile(r"\d[\d ().-]{6,}\d|[\w.+-]+@[\w-]+\.[\w.]+|https?://|\bwww\.|\.[a-z]{2,}/")


class _Checker:
    def __init__(self, catalog: SenderCatalog) -> None:
        self.catalog = catalog
        self.sms = catalog.channel is Channel.SMS
        self.findings: dict[tuple[str, str, str], Finding] = {}
        self.words: dict[IntentKind, frozenset[str]] = {
            kind: frozenset(k.normalized for k in catalog.keywords if k.kind is kind)
            for kind in (IntentKind.OPT_OUT_ALL, IntentKind.OPT_IN, IntentKind.HELP)
        }

    def flag(self, severity: Severity, key: str, message: str) -> None:
        c = self.catalog
        self.findings.setdefault(
            (severity, key, message), Finding(severity, c.sender, c.source, key, message)
        )

    def mentions(self, text: str, kind: IntentKind) -> bool:
        padded = f" {normalize(text)} "
        return any(f" {w} " in padded for w in self.words[kind])

    def names(self, text: str, program: Program | None, language: str) -> bool:
        lowered = text.casefold()
        titles = [self.catalog.brand]
        if program is not None:
            titles += [program.title, program.text(language).title or program.title]
        return any(t.casefold() in lowered for t in titles)

    def check(self, kind: ReplyKind, language: str, program: Program | None) -> None:
        found = self.catalog.template(language, kind)
        if found is None or found[0] != language:
            return  # absent here: the default language's template answers and is audited there
        text = render(self.catalog, kind, language, program).text
        key = f"templates.{language}.{kind.value}"
        # HELP has one answer per sender (rendered for the default program): no program suffix.
        who = f" (program {program.name})" if program and kind is not ReplyKind.HELP else ""
        if kind is ReplyKind.HELP:
            self.check_help(text, key, program, language, who)
        elif kind is ReplyKind.OPT_IN and program is not None:
            self.check_opt_in(text, key, program, language, who)
        elif kind is ReplyKind.OPT_OUT:
            self.check_opt_out(text, key, program, language, who)
        if self.sms and (n := segments(text)) > 1:
            self.flag("warning", key, f"is {n} SMS segments{who}; one is billed per segment")

    def check_help(self, text: str, key: str, p: Program | None, lang: str, who: str) -> None:
        if not self.names(text, p, lang):
            self.flag("error", key, f"does not name the program or brand{who}")
        contact = p.help_contact if p else ""
        if not (contact and contact.casefold() in text.casefold()) and not _CONTACT.search(text):
            self.flag("error", key, f"gives no contact (phone, email or URL){who}")
        self.check_terms(text, key, p, lang, who, severity="warning")

    def check_opt_in(self, text: str, key: str, p: Program, lang: str, who: str) -> None:
        self.check_terms(text, key, p, lang, who, severity="error")
        if not self.mentions(text, IntentKind.HELP) and self.sms:
            self.flag("error", key, f"has no HELP instructions{who}")
        for label, url in (("privacy policy", p.privacy_url), ("terms", p.terms_url)):
            if url.casefold() not in text.casefold():
                self.flag("error", key, f"has no link to the {label} ({url}){who}")

    def check_terms(
        self, text: str, key: str, p: Program | None, lang: str, who: str, severity: Severity
    ) -> None:
        normalized = normalize(text)
        frequency = normalize(p.text(lang).frequency or p.frequency) if p else ""
        if not (frequency and frequency in normalized) and not _FREQUENCY.search(normalized):
            self.flag(severity, key, f"does not state the message frequency{who}")
        if self.sms and not _RATES.search(normalized):
            self.flag(severity, key, f'does not say "Msg & data rates may apply"{who}')
        if self.sms and not self.mentions(text, IntentKind.OPT_OUT_ALL):
            self.flag(severity, key, f"has no STOP instructions{who}")

    def check_opt_out(self, text: str, key: str, p: Program | None, lang: str, who: str) -> None:
        if not _NO_MORE.search(normalize(text)):
            self.flag("error", key, f"does not say that no more messages will be sent{who}")
        if not self.names(text, p, lang):
            self.flag("warning", key, f"does not name the program or brand{who}")
        if self.sms and not self.mentions(text, IntentKind.OPT_IN):
            self.flag("warning", key, f"does not say how to resume (START){who}")


def audit(catalog: SenderCatalog) -> list[Finding]:
    """Findings for ``catalog``, errors first; an empty list means nothing to fix."""
    checker = _Checker(catalog)
    for language in catalog.languages:
        # As decide() renders them: HELP with the default program, the STOP-all confirmation
        # sender-wide, everything else per program.
        checker.check(ReplyKind.HELP, language, catalog.default_programs[0])
        checker.check(ReplyKind.OPT_OUT, language, None)
        for program in catalog.programs:
            for kind in (ReplyKind.OPT_IN, ReplyKind.OPT_OUT, ReplyKind.ALREADY_OPTED_IN):
                checker.check(kind, language, program)
            if program.double_opt_in:
                checker.check(ReplyKind.PENDING, language, program)
    found = list(checker.findings.values())
    return sorted(found, key=lambda f: (f.severity != "error", f.key, f.message))
