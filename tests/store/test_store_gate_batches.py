"""The batch gate's hot path: a batch that is E.164 throughout is checked in one pass, and
answers exactly as the per-recipient path does (docs/DESIGN.md, invariants 2 and 9).

A line feed inside a number, a Unicode digit, a national spelling, letters: any of them
sends the whole batch down the per-recipient path, and each recipient gets the answer it
gets alone.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from support import eventually, sms

from gateway.addresses import E164_RE, all_e164
from gateway.app import Gateway
from gateway.store.near import NearCache
from keywords.model import Channel

SCOPE = ("12345", "reminders", Channel.SMS)
IN, OUT, ERASED, UNKNOWN = "+14155550101", "+14155550102", "+14155550103", "+14155550104"

_PIECES = st.sampled_from(
    ["+14155550123", "+447911123456", "+1", "+0123456789", "+1234567890123456", "14155550123",
     "+1415555\n0123", "+14155550123\n", "\n", "", "+1415555٠١٢٣", "+１４１５５５５０１２３",
     "+14155550123 ", "+1415-555-0123", "+999999999999999"]
)  # fmt: skip


@given(st.lists(st.one_of(_PIECES, st.text(alphabet="+0123456789\n ", max_size=18))))
@example(["+14155550123\n+14155550124"])  # two numbers in one string: two lines, one entry
@example(["+14155550123", "\n+14155550124"])
def test_one_pass_over_a_batch_agrees_with_each_number_alone(raws: list[str]) -> None:
    """``all_e164`` is true exactly when the batch is not empty and every entry matches
    ``E164_RE``."""
    assert all_e164(raws) == (bool(raws) and all(E164_RE.match(r) for r in raws))


async def _trusted(gw: Gateway) -> None:
    near = gw.cache
    assert isinstance(near, NearCache)

    async def trusted() -> bool:
        return gw.guard.usable and await near._in_step()

    await eventually(trusted, timeout=5, interval=0.01, message="the cache was never trusted")


def _counts(gw: Gateway) -> dict[tuple[str, str], float]:
    counter = gw.metrics.gate_checks
    return {
        (allowed, source): counter.labels(allowed, source)._value.get()
        for allowed in ("true", "false")
        for source in ("cache", "postgres")
    }


async def test_a_mixed_batch_and_an_e164_batch_answer_as_single_checks(gateway: Gateway) -> None:
    """Opted in, opted out, erased (opted in but on the suppression list), unknown, a
    national spelling, letters and two numbers joined by a line feed, in one batch and in
    an E.164-only batch: the answers are those of single checks, and the metrics count every
    answer, an erased recipient as decided before the suppression list."""
    gw = gateway
    await _trusted(gw)
    for number in (IN, ERASED):
        await gw.pipeline.handle(sms("START", contact=number))
    await gw.pipeline.handle(sms("START", contact=OUT))
    await gw.pipeline.handle(sms("STOP", contact=OUT))
    gw.suppression.add([d for _, d in gw.suppression.digests("sms", ERASED)])

    e164 = [IN, OUT, ERASED, UNKNOWN]
    mixed = [*e164, "(415) 555-0101", "CALL-NOW", f"{IN}\n{UNKNOWN}"]
    expected = ["opted_in", "opted_out", "suppressed", "no_consent", "opted_in"]
    expected += ["invalid_address", "invalid_address"]
    singles = [(await gw.gate.check(*SCOPE, raw)).reason for raw in mixed]
    assert expected == singles

    for batch in (mixed, e164, mixed):  # the per-recipient path, the one pass, again
        before = _counts(gw)
        answers = await gw.gate.check_many(*SCOPE, batch)
        assert singles[: len(batch)] == [a.reason for a in answers]
        delta = {k: v - before[k] for k, v in _counts(gw).items()}
        # IN, ERASED and the national spelling of IN were decided "allowed".
        allowed = delta[("true", "cache")] + delta[("true", "postgres")]
        assert (3 if batch is mixed else 2, len(batch)) == (allowed, sum(delta.values()))
