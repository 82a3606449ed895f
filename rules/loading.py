"""Loading rule data (pure layer, the one module that reads files): TOML in, a RuleSet out.

Two layers. The shipped table (``config/rules/*.toml``, reviewed with the code) defines the
law as read and must cover every category and consent basis. An operator directory may add
rules, categories' stricter policies and shorter consent durations; a definition that
replaces a shipped one must be no weaker (``rules.strictness``). Every problem is a
``RulesError(file, dotted key, message)``, as sender catalogs report theirs.

Operator documents need not be files: the admin API stores them as TOML text
(gateway/store/rule_overrides.py) and hands them to ``load_rules`` as ``(source, text)``
pairs. They join the operator directory's files in one operator layer and are checked
exactly as those files are (``parse_rule_text``); this module still reads no database, only
the two directories.

File format (each top-level table optional)::

    [rules.<id>]            title, jurisdiction, presume_by_area_code, channels, categories,
                            closed_on, sources = [{citation, url, checked}],
                            effective = {from, until}, windows, caps, conditions
    [rules.<id>.windows]    daily | weekdays | weekend | mon..sun = "HH:MM-HH:MM" | "closed"
    [[rules.<id>.caps]]     count, period, scope, across_channels
    [categories.<name>]     consent = {sms = "<level>", email = "<level>"}, jurisdictions
    [consent.<basis>]       months (absent: never expires), sources
    [holidays.<name>]       title, observed, sources, days = [...], extra = [dates]
"""

from __future__ import annotations

import tomllib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from rules.errors import RulesError
from rules.model import (
    Basis,
    Category,
    RuleSet,
)
from rules.strictness import weaker_category, weaker_duration, weaker_rule

__all__ = ["load_rule_file", "load_rules", "parse_rule_data", "parse_rule_text"]

from rules.schema import Layer, parse_rule_data


class _Defined(Protocol):
    @property
    def file(self) -> str: ...


K = TypeVar("K", bound=Hashable)
D = TypeVar("D", bound=_Defined)


def load_rules(
    shipped: Path, operator: Path | None = None, documents: Sequence[tuple[str, str]] = ()
) -> RuleSet:
    """Load the shipped table and, if given, an operator directory and operator documents
    (``(source, TOML text)``, in the given order) on top of it, as one operator layer."""
    base = Layer()
    for path in _files(shipped):
        _merge(base, parse_rule_data(_read(path), str(path)))
    _require_complete(base, str(shipped))
    if operator is not None or documents:
        extra = Layer()
        for path in _files(operator) if operator is not None else []:
            _merge(extra, parse_rule_data(_read(path), str(path)))
        for source, text in documents:
            # One layer with the files: the same definition in a file and a document (or in
            # two documents) is a conflict, as it is between two files of operator_dir.
            _merge(extra, parse_rule_text(text, source))
        _overlay(base, extra)
    _check_references(base)
    return RuleSet(
        rules=tuple(base.rules.values()),
        categories=dict(base.categories),
        durations=dict(base.durations),
        holidays=dict(base.holidays),
        files=tuple(base.files),
    )


def load_rule_file(path: Path) -> Layer:
    """Read and validate one file on its own (what ``load_rules`` does for each file)."""
    return parse_rule_data(_read(path), str(path))


def parse_rule_text(text: str, source: str) -> Layer:
    """Validate one document given as TOML text, named ``source`` in every error."""
    return parse_rule_data(_toml(text, source), source)


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise RulesError(str(directory), "", "is not a directory")
    return sorted(directory.glob("*.toml"))


def _read(path: Path) -> Mapping[str, object]:
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RulesError(source, "", f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(source, "", f"not UTF-8: {exc}") from exc
    return _toml(text, source)


def _toml(text: str, source: str) -> dict[str, object]:
    """``text`` read as TOML; a document tomllib cannot read, or nests too deeply for its
    recursive parser (``a = [[[...]]]``: RecursionError), is a RulesError like any other."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(source, "", f"invalid TOML: {exc}") from exc
    except RecursionError:
        raise RulesError(source, "", "invalid TOML: nested too deeply") from None


def _merge(into: Layer, new: Layer) -> None:
    """Add one file's definitions to its layer; the same name twice in a layer conflicts."""
    into.files.extend(new.files)
    _add("rules", into.rules, new.rules)
    _add("categories", into.categories, new.categories)
    _add("consent", into.durations, new.durations)
    _add("holidays", into.holidays, new.holidays)


def _add(table: str, mine: dict[K, D], theirs: Mapping[K, D]) -> None:
    for name, item in theirs.items():
        first = mine.get(name)
        if first is not None:
            raise RulesError(item.file, f"{table}.{name}", f"is already defined in {first.file}")
        mine[name] = item


def _require_complete(layer: Layer, source: str) -> None:
    for category in Category:
        if category not in layer.categories:
            raise RulesError(source, f"categories.{category}", "is required in the shipped table")
    for basis in Basis:
        if basis not in layer.durations:
            raise RulesError(source, f"consent.{basis}", "is required in the shipped table")


def _overlay(base: Layer, extra: Layer) -> None:
    """Put the operator layer on the shipped one: additions, or no-weaker replacements."""
    base.files.extend(extra.files)
    for name, rule in extra.rules.items():
        shipped = base.rules.get(name)
        if shipped is not None:
            _no_weaker(weaker_rule(rule, shipped), rule.file, f"rules.{name}", shipped.file)
        base.rules[name] = rule
    for category, policy in extra.categories.items():
        old = base.categories[category]
        _no_weaker(weaker_category(policy, old), policy.file, f"categories.{category}", old.file)
        base.categories[category] = policy
    for basis, duration in extra.durations.items():
        was = base.durations[basis]
        _no_weaker(weaker_duration(duration, was), duration.file, f"consent.{basis}", was.file)
        base.durations[basis] = duration
    for name, definition in extra.holidays.items():
        first = base.holidays.get(name)
        if first is not None:
            raise RulesError(
                definition.file,
                f"holidays.{name}",
                f"is already defined in {first.file} (add a calendar of your own)",
            )
        base.holidays[name] = definition


def _no_weaker(found: tuple[str, str] | None, file: str, key: str, shipped: str) -> None:
    if found is not None:
        where, why = found
        raise RulesError(
            file, f"{key}.{where}", f"{why}: weaker than the shipped {key} ({shipped})"
        )


def _check_references(layer: Layer) -> None:
    for rule in layer.rules.values():
        for name in sorted(rule.closed_on - set(layer.holidays)):
            raise RulesError(
                rule.file, f"rules.{rule.id}.closed_on", f'no holiday calendar "{name}"'
            )
