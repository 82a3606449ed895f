"""Stricter or weaker (pure layer): may an operator's definition replace a shipped one?

Operators add rules freely: every rule that reaches a send must allow it, so an added rule
can only narrow what is allowed. Replacing a shipped definition (an operator rule with the
id of a shipped rule, a category policy, a consent duration) is where a rule could be
loosened, so the replacement must be *no weaker* than what it replaces.

Precisely: a replacement is weaker when some send, at some instant, somewhere, would be
allowed under it and refused or deferred under the shipped definition. The checks below are
component by component, each sufficient on its own to keep that from happening:

- jurisdiction the same; area-code presumption kept if the shipped rule has it;
- channels and categories a superset (a rule that stops covering a channel or category lets
  those sends through); holiday closures a superset;
- in force at least as long: from no later, until no earlier (open-ended stays open-ended);
- on every weekday the window lies inside the shipped window, and a day the shipped rule
  closes stays closed;
- for every shipped cap a cap of the same period with a count no higher, a scope at least as
  wide (subject < program < sender < channel) and across channels if the shipped one is;
- content conditions kept: a character limit no higher, each required statement required;
- a category needs at least the shipped consent level on each channel, opens no channel and
  no jurisdiction the shipped policy does not;
- a consent basis expires no later.

The componentwise test is conservative: a replacement that is stricter overall but looser
in one component (a later close offset by a lower cap) is refused. Say it with an added rule.
"""

from __future__ import annotations

from rules.model import SCOPE_WIDTH, WEEKDAYS, Cap, CategoryPolicy, Duration, Rule

__all__ = ["weaker_category", "weaker_duration", "weaker_rule"]

Finding = tuple[str, str]  # (key under the definition, why it is weaker)


def weaker_rule(new: Rule, old: Rule) -> Finding | None:
    """Where ``new`` would allow a send ``old`` refuses, or None if it never does."""
    if new.jurisdiction != old.jurisdiction:
        return "jurisdiction", f'is "{new.jurisdiction}", the rule it replaces "{old.jurisdiction}"'
    if old.presume_by_area_code and not new.presume_by_area_code:
        return "presume_by_area_code", "drops the area-code presumption"
    for name, mine, theirs in (
        ("channels", new.channels, old.channels),
        ("categories", new.categories, old.categories),
        ("closed_on", new.closed_on, old.closed_on),
    ):
        dropped = sorted(str(x) for x in set(theirs) - set(mine))
        if dropped:
            return name, f"drops {', '.join(dropped)}"
    if new.effective_from is not None and (
        old.effective_from is None or new.effective_from > old.effective_from
    ):
        shipped = old.effective_from or "always"
        return "effective.from", f"starts {new.effective_from}; the rule it replaces {shipped}"
    if new.effective_until is not None and (
        old.effective_until is None or new.effective_until < old.effective_until
    ):
        shipped = old.effective_until or "never"
        return "effective.until", f"ends {new.effective_until}; the rule it replaces ends {shipped}"
    found = _weaker_windows(new, old)
    if found is not None:
        return found
    for cap in old.caps:
        if not any(_no_weaker_cap(mine, cap) for mine in new.caps):
            return "caps", f"has no cap at least as strict as {cap}"
    return _weaker_conditions(new, old)


def _weaker_windows(new: Rule, old: Rule) -> Finding | None:
    if old.windows is None:
        return None
    if new.windows is None:
        return "windows", "has no hours; the rule it replaces has"
    for name, mine, theirs in zip(WEEKDAYS, new.windows, old.windows, strict=True):
        if mine is None:
            continue
        if theirs is None:
            return f"windows.{name}", f"opens {mine} on a day the rule it replaces is closed"
        if not theirs.covers(mine):
            return f"windows.{name}", f"opens {mine}, wider than {theirs}"
    return None


def _no_weaker_cap(mine: Cap, theirs: Cap) -> bool:
    return (
        mine.period is theirs.period
        and mine.count <= theirs.count
        and SCOPE_WIDTH[mine.scope] >= SCOPE_WIDTH[theirs.scope]
        and (mine.across_channels or not theirs.across_channels)
    )


def _weaker_conditions(new: Rule, old: Rule) -> Finding | None:
    if old.conditions is None:
        return None
    if new.conditions is None:
        return "conditions", "drops the content conditions"
    mine, theirs = new.conditions, old.conditions
    if theirs.max_chars is not None and (
        mine.max_chars is None or mine.max_chars > theirs.max_chars
    ):
        allows = mine.max_chars or "any length"
        return "conditions.max_chars", f"allows {allows}, more than {theirs.max_chars}"
    for name in ("free_to_recipient", "names_provider", "stop_instructions"):
        if getattr(theirs, name) and not getattr(mine, name):
            return f"conditions.{name}", "is required by the rule it replaces"
    return None


def weaker_category(new: CategoryPolicy, old: CategoryPolicy) -> Finding | None:
    """Where ``new`` would let the category through with less consent, or more widely."""
    for channel, level in new.consent.items():
        shipped = old.consent.get(channel)
        if shipped is None:
            return f"consent.{channel}", "opens a channel the shipped policy does not"
        if level < shipped:
            return f"consent.{channel}", (
                f"needs {level.name.lower()}, less than the shipped {shipped.name.lower()}"
            )
    if old.jurisdictions is not None:
        if new.jurisdictions is None:
            return "jurisdictions", f"is unlimited; the shipped policy allows only {_list(old)}"
        extra = sorted(new.jurisdictions - old.jurisdictions)
        if extra:
            return "jurisdictions", f"adds {', '.join(extra)}"
    return None


def _list(policy: CategoryPolicy) -> str:
    return ", ".join(sorted(policy.jurisdictions or ()))


def weaker_duration(new: Duration, old: Duration) -> Finding | None:
    """Where ``new`` keeps a consent basis alive longer than ``old``."""
    if old.months is None:
        return None
    if new.months is None or new.months > old.months:
        lasts = "forever" if new.months is None else f"{new.months} months"
        return "months", f"lasts {lasts}, longer than the shipped {old.months} months"
    return None
