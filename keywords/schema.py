"""Sender file schema (pure layer): validate parsed TOML into a SenderCatalog, naming bad keys.

Top-level keys: sender, kind, channel, brand, default_language, [programs.<name>],
[keywords.<language>] (opt_out, opt_in, confirm, help: words *added* to the reserved ones)
and [templates.<language>] (help, opt_in, opt_out, pending, already_opted_in, and for SMS
senders keep_offer, which turns on the keep offer of a widened opt-out: keywords/consent.py).
Every error is a ``CatalogError(source, dotted key, message)``.

Limits (2026-12-02). A definition also comes from the admin API (PUT /v1/admin/senders), so
nothing in it is trusted to be small or printable:

- lengths in characters: brand 64, title 100, frequency 100, description 300, help contact
  254 (an address, RFC 5321 section 4.5.3.1.3), URLs 2,048, keywords 40, templates 1,600 (ten
  SMS segments of 160, the longest text the pipeline takes), an email list address 254;
- counts: 50 programs, 20 languages per table, 100 keywords per list (every keyword is
  checked against every opt-out, and each of its spans against the reserved words);
- no control characters: C0 and C1 controls, DEL, line and paragraph separators and the bidi
  controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, which reorder what a
  reader sees: CVE-2021-42574) are refused everywhere. The brand goes into the From header and
  the title into the Subject of confirmation mail, where CR or LF would start another header
  (RFC 5322 section 2.2). A template may hold line feeds (U+000A, GSM 03.38 has one, and a mail
  body takes them), nothing else; no current template uses one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from keywords.catalog import Keyword, Program, ProgramText, SenderCatalog, Template
from keywords.errors import CatalogError
from keywords.model import Channel, IntentKind, ReplyKind, SenderKind
from keywords.normalize import lookalikes, normalize
from keywords.replies import KEEP_PLACEHOLDERS, PLACEHOLDERS, placeholders
from keywords.reserved import FAMILIES, GLUED_EXCEPTIONS, RESERVED, revocation

__all__ = ["parse_sender"]

_TOP = frozenset(
    {"sender", "kind", "channel", "brand", "default_language", "programs", "keywords", "templates"}
)
_PROGRAM = frozenset(
    {
        "title",
        "description",
        "frequency",
        "help_contact",
        "privacy_url",
        "terms_url",
        "default",
        "double_opt_in",
        "keywords",
        "translations",
        "categories",
        "basis",
    }
)
# The names rules/ gives message categories and consent bases (rules.model.Category and
# Basis; keywords/ imports nothing of rules/, tests/keywords holds the lists equal).
CATEGORIES = ("marketing", "informational", "healthcare_exempt", "transactional")
BASES = ("express_written", "express", "implied_purchase", "implied_inquiry", "soft_opt_in")
_TRANSLATION = frozenset({"title", "description", "frequency"})
_SENDER_FORMS = {
    SenderKind.SHORT_CODE: (re.compile(r"\d{3,8}"), Channel.SMS, "3-8 digits"),
    SenderKind.LONG_CODE: (re.compile(r"\+[1-9]\d{6,14}"), Channel.SMS, "E.164, e.g. +14155550100"),
    SenderKind.EMAIL_LIST: (re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"), Channel.EMAIL, "an address"),
}
_SLUG = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?")
_FAMILY_OF = {kind: family for family, kind in FAMILIES.items()} | {IntentKind.JOIN: "join"}

MAX_CHARS = {
    "kind": 32,
    "channel": 32,
    "default_language": 16,
    "sender": 254,
    "brand": 64,
    "title": 100,
    "frequency": 100,
    "description": 300,
    "help_contact": 254,
    "privacy_url": 2_048,
    "terms_url": 2_048,
}
MAX_KEYWORD = 40
MAX_TEMPLATE = 1_600
MAX_PROGRAMS = 50
MAX_LANGUAGES = 20
MAX_WORDS = 100
# Bidi controls (Unicode 15.1, UAX #9 section 2): marks and embeddings, overrides, isolates.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def bad_character(text: str, *, newlines: bool = False) -> str | None:
    """The first control character of ``text`` as ``U+XXXX``, or None (LF too if allowed)."""
    for ch in text:
        if ch == "\n" and newlines:
            continue
        if ch in _BIDI or unicodedata.category(ch) in _UNPRINTABLE:
            return f"U+{ord(ch):04X}"
    return None


class _Parser:
    """One pass over one file's data; ``fail`` raises with the file name attached."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.words: dict[str, tuple[Keyword, str]] = {}  # normalized -> (keyword, toml key)

    def fail(self, key: str, message: str) -> CatalogError:
        return CatalogError(self.source, key, message)

    def table(self, data: Mapping[str, object], key: str, allowed: frozenset[str] | None) -> None:
        for name in data:
            if allowed is not None and name not in allowed:
                raise self.fail(_join(key, name), "unknown key")

    def sub(self, data: Mapping[str, object], key: str, name: str) -> Mapping[str, object]:
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            raise self.fail(_join(key, name), "must be a table")
        return value

    def text(
        self,
        data: Mapping[str, object],
        key: str,
        name: str,
        *,
        required: bool = True,
        max_len: int | None = None,
        newlines: bool = False,
    ) -> str:
        value = data.get(name)
        if value is None and not required:
            return ""
        if value is None:
            raise self.fail(_join(key, name), "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(_join(key, name), "must be a non-empty string")
        return self.bounded(_join(key, name), value.strip(), max_len or MAX_CHARS[name], newlines)

    def bounded(self, key: str, value: str, max_len: int, newlines: bool = False) -> str:
        """``value`` if it is short enough and holds no control character."""
        if len(value) > max_len:
            raise self.fail(key, f"must be at most {max_len} characters, got {len(value)}")
        bad = bad_character(value, newlines=newlines)
        if bad is not None:
            allowed = "line feeds only" if newlines else "no control or bidi characters"
            raise self.fail(key, f"holds {bad} ({allowed})")
        return value

    def languages(self, data: Mapping[str, object], key: str) -> Mapping[str, object]:
        """A table keyed by language, of at most ``MAX_LANGUAGES`` entries."""
        if len(data) > MAX_LANGUAGES:
            raise self.fail(key, f"at most {MAX_LANGUAGES} languages")
        return data

    def flag(self, data: Mapping[str, object], key: str, name: str) -> bool:
        value = data.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(_join(key, name), "must be true or false")
        return value

    def strings(self, data: Mapping[str, object], key: str, name: str) -> tuple[str, ...]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(_join(key, name), "must be a list of strings")
        if len(value) > MAX_WORDS:
            raise self.fail(_join(key, name), f"at most {MAX_WORDS} keywords")
        return tuple(self.bounded(_join(key, name), str(v), MAX_KEYWORD) for v in value)

    def language(self, key: str, value: str) -> str:
        if not _LANGUAGE.fullmatch(value):
            raise self.fail(key, f'"{value}" is not a language code like "en" or "fr-ca"')
        return value

    def add(
        self,
        word: str,
        kind: IntentKind,
        lang: str,
        key: str,
        program: str | None = None,
        *,
        reserved: bool = False,
    ) -> Keyword:
        """Register a keyword; a word may mean one thing only (one intent, one language)."""
        normalized = normalize(word)
        if not normalized:
            raise self.fail(key, f'"{word}" has no letters or digits')
        new = Keyword(word, normalized, kind, lang, program, reserved)
        old = self.words.get(normalized)
        if old is not None:
            k, where = old
            if (k.kind, k.language, k.program) == (new.kind, new.language, new.program):
                return k  # listed twice for the same meaning (ARRET / ARRÊT): harmless
            if k.reserved:
                raise self.fail(
                    key, f'"{word}" is reserved for {_FAMILY_OF[k.kind]} ({k.language})'
                )
            raise self.fail(key, f'"{word}" is already a keyword at {where}')
        if kind is not IntentKind.OPT_OUT_ALL:
            self.refuse_opt_out_lookalike(word, normalized, key)
        self.words[normalized] = (new, key)
        return new

    def refuse_opt_out_lookalike(self, word: str, normalized: str, key: str) -> None:
        """A non-opt-out keyword must not read as an opt-out: the opt-out always wins.

        Its look-alike readings count too (``keywords.normalize.lookalikes``): classify takes
        an opt-out from them, so a help word ``ЅТОР`` could never be answered as help.
        """
        outs = {n for n, (k, _) in self.words.items() if k.kind is IntentKind.OPT_OUT_ALL}
        for reading in (normalized, *lookalikes(word)):
            clash = _opt_out_in(reading, outs)
            if clash is not None:
                raise self.fail(key, f'"{word}" would read as the opt-out "{clash}"')


def _opt_out_in(normalized: str, outs: set[str]) -> str | None:
    """The opt-out word or phrase a normalized text would be classified by, if any."""
    parts = normalized.split(" ")
    spans = {" ".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
    clash = next(iter(sorted(spans & outs)), None)
    first = parts[0]
    if clash is None and first not in GLUED_EXCEPTIONS:
        clash = next((o for o in outs if " " not in o and first.startswith(o)), None)
    if clash is None and (found := revocation(normalized)) is not None:
        clash = found[1]
    return clash


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def parse_sender(data: Mapping[str, object], source: str) -> SenderCatalog:
    """Build a SenderCatalog from parsed TOML; raise ``CatalogError`` on the first problem."""
    p = _Parser(source)
    p.table(data, "", _TOP)
    try:
        kind = SenderKind(p.text(data, "", "kind"))
    except ValueError:
        raise p.fail("kind", f"must be one of {', '.join(k.value for k in SenderKind)}") from None
    form, channel, hint = _SENDER_FORMS[kind]
    sender = p.text(data, "", "sender")
    if not form.fullmatch(sender):
        raise p.fail("sender", f'"{sender}" is not a {kind.value} ({hint})')
    if p.text(data, "", "channel") != channel.value:
        raise p.fail("channel", f'a {kind.value} sender uses channel "{channel.value}"')
    brand = p.text(data, "", "brand")
    default_language = p.language("default_language", p.text(data, "", "default_language"))
    programs = _programs(p, p.sub(data, "", "programs"), channel)
    keywords = _keywords(p, p.sub(data, "", "keywords"), programs, default_language)
    templates = _templates(p, p.sub(data, "", "templates"), default_language, programs, channel)
    return SenderCatalog(
        sender=sender,
        kind=kind,
        channel=channel,
        brand=brand,
        default_language=default_language,
        programs=programs,
        templates=templates,
        keywords=keywords,
        source=source,
    )


def _programs(p: _Parser, table: Mapping[str, object], channel: Channel) -> tuple[Program, ...]:
    programs: list[Program] = []
    if len(table) > MAX_PROGRAMS:
        raise p.fail("programs", f"at most {MAX_PROGRAMS} programs")
    for name in table:
        key = f"programs.{name}"
        if not _SLUG.fullmatch(name):
            raise p.fail(key, "a program name is a lower-case slug (a-z, 0-9, _ and -)")
        body = p.sub(table, "programs", name)
        p.table(body, key, _PROGRAM)
        translations = []
        for lang, tr in p.languages(p.sub(body, key, "translations"), key).items():
            tkey = f"{key}.translations.{lang}"
            if not isinstance(tr, Mapping):
                raise p.fail(tkey, "must be a table")
            p.table(tr, tkey, _TRANSLATION)
            translations.append(
                ProgramText(
                    p.language(tkey, lang),
                    title=p.text(tr, tkey, "title", required=False) or None,
                    description=p.text(tr, tkey, "description", required=False) or None,
                    frequency=p.text(tr, tkey, "frequency", required=False) or None,
                )
            )
        programs.append(
            Program(
                name=name,
                title=p.text(body, key, "title"),
                description=p.text(body, key, "description"),
                frequency=p.text(body, key, "frequency"),
                help_contact=p.text(body, key, "help_contact"),
                privacy_url=p.text(body, key, "privacy_url"),
                terms_url=p.text(body, key, "terms_url"),
                channel=channel,
                default=p.flag(body, key, "default"),
                double_opt_in=p.flag(body, key, "double_opt_in"),
                keywords=p.strings(body, key, "keywords"),
                translations=tuple(translations),
                categories=_categories(p, body, key),
                basis=_basis(p, body, key),
            )
        )
    if not programs:
        raise p.fail("programs", "at least one program is required")
    if not any(prog.default for prog in programs):
        raise p.fail("programs", "no program has default = true (START would join nothing)")
    return tuple(programs)


def _categories(p: _Parser, body: Mapping[str, object], key: str) -> tuple[str, ...]:
    if "categories" not in body:
        return ("informational",)
    found = p.strings(body, key, "categories")
    if not found:
        raise p.fail(f"{key}.categories", "must name at least one category")
    for name in found:
        if name not in CATEGORIES:
            raise p.fail(f"{key}.categories", f'"{name}" is not one of {", ".join(CATEGORIES)}')
    if len(set(found)) < len(found):
        raise p.fail(f"{key}.categories", "names a category twice")
    return found


def _basis(p: _Parser, body: Mapping[str, object], key: str) -> str:
    value = body.get("basis", "express")
    if value not in BASES:
        raise p.fail(f"{key}.basis", f"must be one of {', '.join(BASES)}, not {value!r}")
    return str(value)


def _keywords(
    p: _Parser, table: Mapping[str, object], programs: tuple[Program, ...], default_language: str
) -> tuple[Keyword, ...]:
    found: list[Keyword] = []
    operator: list[tuple[str, str, str, str]] = []  # (word, family, language, key)
    for lang, body in p.languages(table, "keywords").items():
        key = f"keywords.{lang}"
        p.language(key, lang)
        if not isinstance(body, Mapping):
            raise p.fail(key, "must be a table")
        p.table(body, key, frozenset(FAMILIES))
        for family in FAMILIES:
            operator += [(w, family, lang, f"{key}.{family}") for w in p.strings(body, key, family)]
    # Opt-out words first, so every other word can be checked against the full opt-out family.
    for lang, family, words in sorted(RESERVED, key=lambda r: r[1] != "opt_out"):
        for w in words:
            found.append(p.add(w, FAMILIES[family], lang, "reserved", reserved=True))
    for w, family, lang, key in sorted(operator, key=lambda o: o[1] != "opt_out"):
        found.append(p.add(w, FAMILIES[family], lang, key))
    targets: dict[str, str] = {}
    for prog in programs:
        key = f"programs.{prog.name}.keywords"
        for w in prog.keywords:
            # Program keywords have no language of their own: replies use the default one.
            found.append(p.add(w, IntentKind.JOIN, default_language, key, program=prog.name))
        for target in (prog.name, *prog.keywords):
            where = f"programs.{prog.name}" if target == prog.name else key
            normalized = normalize(target)
            other = targets.setdefault(normalized, prog.name)
            if other != prog.name:
                raise p.fail(where, f'"{target}" already names program "{other}"')
            combined = {
                f"{o} {normalized}"
                for o, (k, _) in p.words.items()
                if k.kind is IntentKind.OPT_OUT_ALL
            }
            if clash := sorted(combined & p.words.keys()):
                raise p.fail(where, f'"{target}" makes the keyword "{clash[0]}" ambiguous')
    return tuple(dict.fromkeys(found))


def _templates(
    p: _Parser,
    table: Mapping[str, object],
    default_language: str,
    programs: tuple[Program, ...],
    channel: Channel,
) -> tuple[Template, ...]:
    templates: list[Template] = []
    kinds = frozenset(k.value for k in ReplyKind)
    for lang, body in p.languages(table, "templates").items():
        key = f"templates.{lang}"
        p.language(key, lang)
        if not isinstance(body, Mapping):
            raise p.fail(key, "must be a table")
        p.table(body, key, kinds)
        for name in body:
            text = p.text(body, key, name, max_len=MAX_TEMPLATE, newlines=True)
            keep = name == ReplyKind.KEEP_OFFER.value
            try:
                used = placeholders(text, KEEP_PLACEHOLDERS if keep else PLACEHOLDERS)
            except ValueError as exc:
                raise p.fail(f"{key}.{name}", str(exc)) from None
            if keep and "number" not in used:
                raise p.fail(f"{key}.{name}", "must say which number to reply ({number})")
            if keep and channel is not Channel.SMS:
                # The answer is a text back to the sender (keywords/consent.py, revoke-all);
                # an email list has no conversation to answer in.
                raise p.fail(f"{key}.{name}", "only an SMS sender can offer to keep programs")
            templates.append(Template(lang, ReplyKind(name), text))
    required = {ReplyKind.HELP, ReplyKind.OPT_IN, ReplyKind.OPT_OUT, ReplyKind.ALREADY_OPTED_IN}
    if any(prog.double_opt_in for prog in programs):
        required.add(ReplyKind.PENDING)
    have = {t.kind for t in templates if t.language == default_language}
    for kind in sorted(required - have):
        raise p.fail(
            f"templates.{default_language}.{kind.value}",
            "is required in the default language",
        )
    return tuple(templates)
