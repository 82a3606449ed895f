"""Text PostgreSQL can store (I/O layer helper, no I/O): what to remove, what to refuse.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000 (NUL), and UTF-8 cannot hold a lone
surrogate (what JSON's ``"\\ud800"`` or an undecodable mail header read with
``surrogateescape`` becomes in Python). Sent to the database, either fails the transaction,
and a failed commit is a *temporary* error: a provider that posted ``"Stop\\u0000"`` was
answered 503 with Retry-After and retried forever, and the opt-out was never recorded.

Two rules, so that such input is either recorded or refused for good, never retried:

- a subscriber's words (the text and the evidence of an inbound message) are *cleaned*:
  NUL removed, a lone surrogate replaced by U+FFFD, and the evidence says what was removed
  (``clean``); a ``Stop\\u0000`` is then an opt-out like any other;
- an identifier or a value a client sends us to keep (a message id, an idempotency key, a
  send body, a sender definition) is *refused* with a permanent error when it holds such a
  character (``storable``): the client must fix it, and retrying cannot help.
"""

from __future__ import annotations

from collections.abc import Mapping


def storable(value: str) -> bool:
    """True when ``value`` holds no NUL and no lone surrogate."""
    if value.isascii():
        return "\x00" not in value
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean(value: str) -> tuple[str, int]:
    """``value`` with NUL removed and lone surrogates replaced; and how many were changed."""
    if storable(value):
        return value, 0
    without_nul = value.replace("\x00", "")
    removed = len(value) - len(without_nul)
    try:
        without_nul.encode("utf-8")
        return without_nul, removed
    except UnicodeEncodeError:
        pass
    fixed = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in without_nul)
    return fixed, removed + sum(1 for c in without_nul if 0xD800 <= ord(c) <= 0xDFFF)


def clean_mapping(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """Every key and value cleaned; the counts of what changed, by key (cleaned)."""
    # The common case, every key and value storable text, in one pass over one string
    # (``storable`` is ``isascii`` and a search, both in C): an evidence mapping is checked
    # for each inbound message.
    texts = [*values, *values.values()]
    if all(type(t) is str for t in texts) and storable("".join(texts)):
        return dict(values), {}
    out: dict[str, str] = {}
    changed: dict[str, int] = {}
    for key, value in values.items():
        name, in_key = clean(key)
        text, in_value = clean(value) if isinstance(value, str) else (str(value), 0)
        out[name] = text
        if in_key or in_value:
            changed[name] = in_key + in_value
    return out, changed


def all_storable(value: object) -> bool:
    """True when every string in a JSON-like value (keys included) is ``storable``."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return all(storable(str(k)) and all_storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(all_storable(v) for v in value)
    return True
