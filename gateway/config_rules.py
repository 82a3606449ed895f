"""Settings rules (I/O layer helper, no I/O): ranges, choices and relations declared by each field.

A section's field declares its rule where it is defined, and the section its relations::

    @dataclass(frozen=True, slots=True)
    class DatabaseSettings:
        pool_min: int = ranged(2, ge=0)
        pool_max: int = ranged(10, ge=3, why="...")
        RELATIONS: ClassVar[Relations] = (at_most("pool_min", "pool_max"),)

``gateway.settings.section`` checks them whenever it builds a section from its TOML table,
so a value that would only fail later in ``serve`` (``port = 99999``, ``pool_min >
pool_max``, a negative backoff) is refused at load, with the file and the key named, and by
``gateway check-config`` too. A field without a rule is type-checked only. A field marked
``derived`` is filled by code (from another table or the environment) and is refused in the
file as an unknown key. Sections built in code (tests, benchmarks) are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

RULE = "gateway.config.rule"
DERIVED = "gateway.config.derived"

_N = TypeVar("_N", int, float)
_T = TypeVar("_T")


def _number(value: float) -> str:
    return str(value)


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds of a number: ``ge``/``gt`` below, ``le``/``lt`` above (any may be None)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    why: str = ""

    def describe(self) -> str:
        """The bounds in words: ``between 0 and 65535``, ``greater than 0``..."""
        low = (
            f"at least {_number(self.ge)}"
            if self.ge is not None
            else f"greater than {_number(self.gt)}"
            if self.gt is not None
            else ""
        )
        high = (
            f"at most {_number(self.le)}"
            if self.le is not None
            else f"less than {_number(self.lt)}"
            if self.lt is not None
            else ""
        )
        if self.ge is not None and self.le is not None:
            return f"between {_number(self.ge)} and {_number(self.le)}"
        return " and ".join(part for part in (low, high) if part)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or None."""
        if (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        ):
            return f"must be {self.describe()}{_why(self.why)}, got {value!r}"
        return None


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed set of values."""

    options: tuple[object, ...]
    why: str = ""
    listed: bool = True  # False: too many to name in a message (``why`` says what they are)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not one of the options, or None."""
        if value in self.options:
            return None
        if not self.listed:
            return f"must be {self.why}, got {value!r}"
        listed = ", ".join(repr(o) for o in self.options)
        return f"must be one of {listed}{_why(self.why)}, got {value!r}"


@dataclass(frozen=True, slots=True)
class Text:
    """A string's length in characters."""

    min_len: int = 0
    max_len: int | None = None
    why: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is too short or too long, or None."""
        if len(value) < self.min_len:
            return "must not be empty" if self.min_len == 1 else f"needs {self.min_len} characters"
        if self.max_len is not None and len(value) > self.max_len:
            return f"must be at most {self.max_len} characters{_why(self.why)}"
        return None


Rule = Range | Choice | Text


def _why(why: str) -> str:
    return f" ({why})" if why else ""


def ranged(
    default: _N,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    why: str = "",
) -> _N:
    """A numeric field with bounds (the default must be within them)."""
    rule = Range(ge=ge, gt=gt, le=le, lt=lt, why=why)
    if rule.problem(default) is not None:
        raise ValueError(f"default {default!r} breaks its own rule: {rule}")
    return field(default=default, metadata={RULE: rule})


def listen_port(default: int) -> int:
    """A port we listen on: 0 asks the system for a free one (tests, side-by-side runs)."""
    return ranged(default, ge=0, le=65535, why="a TCP port; 0: any free port")


def peer_port(default: int) -> int:
    """A port of a peer we connect to."""
    return ranged(default, ge=1, le=65535, why="a TCP port")


def positive(default: _N, *, why: str = "") -> _N:
    """A duration, interval, rate or size that must be more than zero."""
    return ranged(default, gt=0, why=why)


def one_of(default: _T, options: tuple[_T, ...], *, why: str = "", listed: bool = True) -> _T:
    """A field whose value is one of ``options``."""
    if default not in options:
        raise ValueError(f"default {default!r} is not one of the options")
    rule = Choice(tuple(options), why, listed)
    return field(default=default, metadata={RULE: rule})


def text(default: str, *, min_len: int = 0, max_len: int | None = None, why: str = "") -> str:
    """A string field with a length rule (``min_len=1``: must not be empty)."""
    return field(default=default, metadata={RULE: Text(min_len, max_len, why)})


def derived(default: _T) -> _T:
    """A field filled by code, never from the file (an unknown key there)."""
    return field(default=default, metadata={DERIVED: True})


@dataclass(frozen=True, slots=True)
class Relation:
    """``smaller <= larger`` (``strict``: ``<``) between two fields of one section."""

    smaller: str
    larger: str
    strict: bool = False
    why: str = ""

    def problem(self, section: object, name: str) -> tuple[str, str] | None:
        """``(key, why)`` when the relation does not hold, else None."""
        low, high = getattr(section, self.smaller), getattr(section, self.larger)
        if low < high or (low == high and not self.strict):
            return None
        words = "less than" if self.strict else "at most"
        return self.smaller, (
            f"must be {words} {name}.{self.larger} ({high!r}){_why(self.why)}, got {low!r}"
        )


Relations = tuple[Relation, ...]


def at_most(smaller: str, larger: str, *, why: str = "") -> Relation:
    """``smaller <= larger``."""
    return Relation(smaller, larger, why=why)


def less_than(smaller: str, larger: str, *, why: str = "") -> Relation:
    """``smaller < larger``."""
    return Relation(smaller, larger, strict=True, why=why)


def file_keys(cls: type[Any]) -> list[str]:
    """The keys a section's TOML table may hold (its fields, less the derived ones)."""
    return [f.name for f in fields(cls) if not f.metadata.get(DERIVED, False)]


def problems(cls: type[Any], section: object, name: str) -> list[str]:
    """Every rule and relation ``section`` (an instance of ``cls``) breaks, as
    ``"<name>.<key>: why"``; relations are checked between fields that passed their own."""
    found: list[str] = []
    bad: set[str] = set()
    for f in fields(cls):
        rule: Rule | None = f.metadata.get(RULE)
        if rule is None:
            continue
        why = rule.problem(getattr(section, f.name))
        if why is not None:
            found.append(f"{name}.{f.name}: {why}")
            bad.add(f.name)
    relations: Relations = getattr(cls, "RELATIONS", ())
    for relation in relations:
        if {relation.smaller, relation.larger} & bad:
            continue
        broken = relation.problem(section, name)
        if broken is not None:
            found.append(f"{name}.{broken[0]}: {broken[1]}")
    return found
