"""Reply rendering (pure layer): fill a sender's templates with brand and program fields.

Placeholders a template may use: {brand} {program} (the program title) {description}
{frequency} {help_contact} {privacy_url} {terms_url}, and in ``keep_offer`` (one line per
program a widened opt-out offers to keep) also {number}, the number to reply. They are
checked when the catalog loads (``placeholders``), so ``render`` cannot fail on a loaded
catalog.

A reply about every program on the sender at once (the one confirmation of a STOP) is
rendered with ``program=None``: {program} is then the brand, and the other fields come from
the sender's first default program.
"""

from __future__ import annotations

from string import Formatter
from typing import TYPE_CHECKING

from keywords.model import Reply, ReplyKind

if TYPE_CHECKING:
    from keywords.catalog import Program, SenderCatalog

__all__ = ["KEEP_PLACEHOLDERS", "PLACEHOLDERS", "fields", "placeholders", "render"]

PLACEHOLDERS: frozenset[str] = frozenset(
    {"brand", "program", "description", "frequency", "help_contact", "privacy_url", "terms_url"}
)
# The keep offer's line names the number to reply; no other template has one to give.
KEEP_PLACEHOLDERS: frozenset[str] = PLACEHOLDERS | {"number"}


def placeholders(template: str, known: frozenset[str] = PLACEHOLDERS) -> frozenset[str]:
    """The placeholder names in ``template`` (``known``: those it may use).

    Raises ``ValueError`` for unbalanced braces, positional ``{}``, unknown names, attribute or
    index access (``{brand.x}``), conversions and format specs: templates are plain text.
    """
    names: set[str] = set()
    for _literal, name, spec, conversion in Formatter().parse(template):
        if name is None:
            continue
        if name not in known:
            names_known = ", ".join(sorted(known))
            raise ValueError(f"unknown placeholder {{{name}}} (known: {names_known})")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} must not have a format spec or conversion")
        names.add(name)
    return frozenset(names)


def fields(
    catalog: SenderCatalog, language: str, program: Program | None, number: int = 1
) -> dict[str, str]:
    """The placeholder values for a reply about ``program`` (None: the whole sender);
    ``number`` fills {number}, which only ``keep_offer`` may use."""
    base = program or catalog.default_programs[0]
    text = base.text(language)
    return {
        "brand": catalog.brand,
        "program": catalog.brand if program is None else (text.title or program.title),
        "description": text.description or base.description,
        "frequency": text.frequency or base.frequency,
        "help_contact": base.help_contact,
        "privacy_url": base.privacy_url,
        "terms_url": base.terms_url,
        "number": str(number),
    }


def render(
    catalog: SenderCatalog,
    kind: ReplyKind,
    language: str,
    program: Program | None,
    number: int = 1,
) -> Reply:
    """Render ``kind`` in ``language`` (falling back to the sender's default language).

    Raises ``KeyError`` if the sender has no template for ``kind`` at all, which a loaded
    catalog rules out for every kind a decision can produce.
    """
    found = catalog.template(language, kind)
    if found is None:
        raise KeyError(f"{catalog.sender}: no {kind} template")
    used, template = found
    text = template.format_map(fields(catalog, used, program, number))
    return Reply(kind=kind, language=used, text=text, program=program.name if program else None)
