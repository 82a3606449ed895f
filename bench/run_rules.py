"""Rules benchmark: what the compiled batch form adds per recipient, next to a bare dict loop.

One batch (one ``at``, marketing by SMS) over 1,000,000 recipients drawn from every +1 area
code the numbering data knows, 5% with a recorded state or zone and 2% outside NANP:

* ``answers[key]`` with the location key already built (the floor: one dict lookup);
* ``answers[sms_key(e164)]`` from the E.164 string (what the gate does per recipient);
* ``check(key, consent)``: the consent level and lapse too (no earlier sends);
* the ceiling: the same loop over a plain dict of the same keys.

The memo's fill (the first recipient of each key) is timed apart. No servers are needed.
Run: ``python -m bench rules`` or ``python -m bench.run_rules``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rules.evaluate import CompiledRules
from rules.loading import load_rules
from rules.location import area_info, sms_key
from rules.model import Basis, Category, Channel, Consent

N = 1_000_000
ROOT = Path(__file__).resolve().parents[1]


def _numbers(rng: random.Random) -> list[tuple[str, str | None, str | None]]:
    npas = [f"{n}" for n in range(200, 1000) if area_info(f"{n}") is not None]
    out: list[tuple[str, str | None, str | None]] = []
    for _ in range(N):
        roll = rng.random()
        if roll < 0.02:
            out.append((f"+44{rng.randrange(10**9, 10**10)}", None, None))
            continue
        number = f"+1{rng.choice(npas)}{rng.randrange(2_000_000, 9_999_999)}"
        if roll < 0.07:
            out.append((number, rng.choice(["US-NY", "US-TX", None]), "America/New_York"))
        else:
            out.append((number, None, None))
    return out


def _rate(label: str, loop: Callable[[], object], ceiling: float | None = None) -> float:
    start = time.perf_counter()
    loop()
    seconds = time.perf_counter() - start
    per = seconds / N * 1e9
    ratio = f"; {per / ceiling:.2f}x the bare dict loop" if ceiling else ""
    print(f"{label:<44} {N / seconds:>12,.0f}/s  {per:7.1f} ns/recipient{ratio}", flush=True)
    return per


def main() -> None:
    start = time.perf_counter()
    rules = CompiledRules(load_rules(ROOT / "config" / "rules"))
    numbers = _numbers(random.Random(20261202))
    print(f"load + area-code tables: {time.perf_counter() - start:.2f} s")
    at = datetime(2027, 3, 10, 17, 0, tzinfo=UTC)  # 12:00 in New York, a Wednesday
    batch = rules.for_batch(at, Category.MARKETING, Channel.SMS)
    keys = [sms_key(*n) for n in numbers]
    answers = batch.answers
    start = time.perf_counter()
    for key in set(keys):
        answers[key]
    fill = time.perf_counter() - start
    each = fill / len(answers) * 1e6
    print(f"memo fill: {len(answers):,} keys in {fill * 1e3:.0f} ms ({each:.0f} us each)")
    plain = dict.fromkeys(answers, 0)
    consent = Consent(Basis.EXPRESS_WRITTEN, datetime(2026, 1, 5, tzinfo=UTC))
    e164 = [n[0] for n in numbers]
    records = [(n[1], n[2]) for n in numbers]

    def bare() -> None:
        for key in keys:
            plain[key]

    def lookup() -> None:
        for key in keys:
            answers[key]

    def from_e164() -> None:
        for number, (state, zone) in zip(e164, records, strict=True):
            answers[sms_key(number, state, zone)]

    def check() -> None:
        for key in keys:
            batch.check(key, consent)

    ceiling = _rate("ceiling: plain dict lookup", bare)
    _rate("answers[key]", lookup, ceiling)
    _rate("answers[sms_key(e164, state, zone)]", from_e164, ceiling)
    _rate("check(key, consent)", check, ceiling)


if __name__ == "__main__":
    main()
