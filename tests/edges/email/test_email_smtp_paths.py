"""The SMTP server's fast path for MAIL/RCPT paths answers exactly as aiosmtpd's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.edges.smtp.server import _LimitedSMTP, _Slots

ATEXT = "abcXYZ09!#$%&'*+/=?^_`{|}~-"
# Everything that can change how RFC 5322 reads a path: specials, blanks, quotes, comments,
# control and non-ASCII characters.
AWKWARD = ATEXT + '.@<>()[]\\",:; \t\r\n\x0b\x00éü💌'

piece = st.text(alphabet=ATEXT, min_size=1, max_size=6)
awkward = st.text(alphabet=AWKWARD, max_size=8)
dot_atom = st.lists(piece, min_size=1, max_size=3).map(".".join)
rest = st.sampled_from(
    ["", " SIZE=100", "  \tBODY=8BITMIME", " (note) SIZE=1", "(x)", "x", "\x0bX"]
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """Mostly well-formed ``<local@domain>rest``, with an awkward piece spliced in at times."""
    local = draw(st.one_of(dot_atom, awkward))
    domain = draw(st.one_of(dot_atom, awkward))
    lead = draw(st.sampled_from(["", " ", "(c)"]))
    return f"{lead}<{local}@{domain}>{draw(st.one_of(rest, awkward))}"


@pytest.fixture(scope="module")
def server() -> Iterator[_LimitedSMTP]:
    loop = asyncio.new_event_loop()
    try:
        yield _LimitedSMTP(None, _Slots(1, 1), idle_before_mail=30.0, loop=loop)  # type: ignore[arg-type]
    finally:
        loop.close()


@given(arg=st.one_of(paths(), awkward))
@settings(max_examples=3000, deadline=None)
@example(arg="<unsubscribe+AbC-_09@lists.example>")
@example(arg="<a@b>  \t SIZE=10")
@example(arg="<a@b> (comment) SIZE=10")
@example(arg="<>")
@example(arg="<a..b@c>")
@example(arg="<.a@c>")
@example(arg='<"a b"@c>')
@example(arg="<@route:a@b>")
def test_fast_path_answers_as_aiosmtpd_does(server: _LimitedSMTP, arg: str) -> None:
    assert _answer(server._getaddr, arg) == _answer(lambda a: SMTP._getaddr(server, a), arg)


def _answer(parse: Callable[[str], object], arg: str) -> object:
    """The result, or the exception's type: aiosmtpd raises IndexError on some paths (``<``),
    which its session turns into a 500; the fast path must not change that either."""
    try:
        return parse(arg)
    except Exception as exc:  # noqa: BLE001 - the exception's type is the answer compared
        return type(exc)


def test_the_local_part_limit_still_applies(server: _LimitedSMTP) -> None:
    server.local_part_limit = 4
    try:
        assert server._getaddr("<abcd@x.example>") == ("abcd@x.example", "")
        assert server._getaddr("<abcde@x.example>") == (None, None)
        assert SMTP._getaddr(server, "<abcde@x.example>") == (None, None)
    finally:
        server.local_part_limit = 0
