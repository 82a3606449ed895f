"""Sender catalogs (pure layer): per-sender programs, keywords and templates, parsed and indexed.

A catalog is everything one sender (a short code, a long code or an email list) answers with.
It is built once from a TOML file by ``keywords/loading.py`` (``config/senders/12345.toml``
shows the commented format), validated with errors naming the file and the dotted key, and is
frozen and hashable afterwards.
The keyword index that ``classify`` needs is precomputed here so classification is a few dict
lookups (the index fields are derived from the others and take no part in ``==`` or ``hash``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keywords.model import Channel, IntentKind, ReplyKind, SenderKind
from keywords.normalize import normalize

__all__ = [
    "Keyword",
    "KeywordIndex",
    "Program",
    "ProgramText",
    "SenderCatalog",
    "Template",
]


@dataclass(frozen=True, slots=True)
class ProgramText:
    """Per-language overrides of a program's display fields (None: use the program's own)."""

    language: str
    title: str | None = None
    description: str | None = None
    frequency: str | None = None


@dataclass(frozen=True, slots=True)
class Program:
    """One consent scope on a sender: a list people join and leave (``reminders``, ``flu``)."""

    name: str  # id stored in the ledger: a lower-case slug
    title: str  # display name used in replies: "Acme Flu Shot Alerts"
    description: str
    frequency: str  # "Up to 4 msgs/month": CTIA requires it in opt-in confirmations
    help_contact: str
    privacy_url: str
    terms_url: str
    channel: Channel
    default: bool  # joined by START / UNSTOP / YES
    double_opt_in: bool  # START/JOIN asks "Reply YES" first (state PENDING)
    keywords: tuple[str, ...] = ()  # JOIN keywords, as configured ("FLU")
    translations: tuple[ProgramText, ...] = ()
    # What the program sends (rules.model.Category values), the first being a send's
    # category when the send names none, and the consent basis its sign-up records
    # (rules.model.Basis). The gateway checks at load that the basis reaches every
    # category's level (rules.consent.check_program); docs/rules.md, "Programs".
    categories: tuple[str, ...] = ("informational",)
    basis: str = "express"

    def text(self, language: str) -> ProgramText:
        """The title, description and frequency to show in ``language``."""
        for t in self.translations:
            if t.language == language:
                return ProgramText(
                    language,
                    t.title or self.title,
                    t.description or self.description,
                    t.frequency or self.frequency,
                )
        return ProgramText(language, self.title, self.description, self.frequency)


@dataclass(frozen=True, slots=True)
class Template:
    """One reply template: ``text`` may use the placeholders in ``keywords.replies``."""

    language: str
    kind: ReplyKind
    text: str


@dataclass(frozen=True, slots=True)
class Keyword:
    """One word or phrase a sender answers to (``normalized`` is what is matched)."""

    text: str  # as configured: "OPT-OUT"
    normalized: str  # "opt out"
    kind: IntentKind  # OPT_OUT_ALL, OPT_IN, CONFIRM, HELP, or JOIN (with program)
    language: str
    program: str | None = None
    reserved: bool = False  # a default every sender has (keywords.reserved)


@dataclass(frozen=True, slots=True)
class KeywordIndex:
    """Lookup tables for ``classify``; derived from a catalog's keywords and programs."""

    exact: Mapping[str, Keyword]  # whole normalized text -> keyword (incl. "stop flu")
    opt_out: Mapping[str, Keyword]  # opt-out words (one or more words) for leading matches
    opt_out_max_words: int
    glued: tuple[Keyword, ...]  # one-word opt-out keywords, longest first (STOPNEWS)
    targets: Mapping[str, str]  # normalized program name or keyword -> program name
    opt_in_words: frozenset[str]  # one-word opt-in/confirm/join keywords ("yes stop")
    help: Mapping[str, Keyword]  # one-word help keywords for a leading match ("help me")


def _build_index(keywords: tuple[Keyword, ...], programs: tuple[Program, ...]) -> KeywordIndex:
    targets: dict[str, str] = {}
    for p in programs:
        targets[normalize(p.name)] = p.name
        for word in p.keywords:
            targets[normalize(word)] = p.name
    exact = {k.normalized: k for k in keywords}
    opt_out = {k.normalized: k for k in keywords if k.kind is IntentKind.OPT_OUT_ALL}
    for k in opt_out.values():
        for target, program in targets.items():
            combined = f"{k.normalized} {target}"
            exact.setdefault(
                combined,
                Keyword(combined, combined, IntentKind.OPT_OUT, k.language, program, k.reserved),
            )
    one_word = [k for k in opt_out.values() if " " not in k.normalized]
    return KeywordIndex(
        exact=exact,
        opt_out=opt_out,
        opt_out_max_words=max((k.normalized.count(" ") + 1 for k in opt_out.values()), default=1),
        glued=tuple(sorted(one_word, key=lambda k: -len(k.normalized))),
        targets=targets,
        opt_in_words=frozenset(
            k.normalized
            for k in keywords
            if k.kind in (IntentKind.OPT_IN, IntentKind.CONFIRM, IntentKind.JOIN)
        ),
        help={k.normalized: k for k in keywords if k.kind is IntentKind.HELP},
    )


@dataclass(frozen=True, slots=True)
class SenderCatalog:
    """Everything one sender answers with; build it with ``load_sender``."""

    sender: str  # "12345", "+14155550100" or "news@lists.example.org"
    kind: SenderKind
    channel: Channel
    brand: str
    default_language: str
    programs: tuple[Program, ...]
    templates: tuple[Template, ...]
    keywords: tuple[Keyword, ...]
    source: str = ""
    index: KeywordIndex = field(init=False, compare=False, repr=False)
    _templates: Mapping[tuple[str, ReplyKind], str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Derived lookups; object.__setattr__ is the documented way to fill a frozen dataclass.
        object.__setattr__(self, "index", _build_index(self.keywords, self.programs))
        object.__setattr__(
            self, "_templates", {(t.language, t.kind): t.text for t in self.templates}
        )

    def program(self, name: str) -> Program:
        """The program called ``name``; ``KeyError`` if this sender has none."""
        for p in self.programs:
            if p.name == name:
                return p
        raise KeyError(name)

    def has_program(self, name: str) -> bool:
        """True if this sender defines a program called ``name``."""
        return any(p.name == name for p in self.programs)

    @property
    def default_programs(self) -> tuple[Program, ...]:
        """Programs START/UNSTOP/YES join (at least one; validated at load)."""
        return tuple(p for p in self.programs if p.default)

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages that have templates, the default language first."""
        langs = dict.fromkeys([self.default_language, *(t.language for t in self.templates)])
        return tuple(langs)

    def template(self, language: str, kind: ReplyKind) -> tuple[str, str] | None:
        """(language used, text) for ``kind``: ``language``, else the default language."""
        for lang in (language, self.default_language):
            text = self._templates.get((lang, kind))
            if text is not None:
                return lang, text
        return None
