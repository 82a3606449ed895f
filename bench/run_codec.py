"""SMPP codec micro-benchmark: PDUs per second on one core, smpplib next to the fast path.

The PDUs are the ones the gateway handles under load (bench/run_smpp.py): a STOP deliver_sm
as node-smpp writes it, a SAR part and a delivery receipt (TLVs the edge reads), the
submit_sm of a confirmation, submit_sm_resp, deliver_sm_resp and enquire_link_resp. Each
row is timed with ``codec.reference_decode`` / ``reference_encode`` (smpplib, what
``decode`` / ``encode`` did before the fast path) and with ``decode`` / ``encode``; the
ratio is fast / reference. Figures are the best of ``BENCH_CODEC_REPEATS`` (default 5)
rounds of ``BENCH_CODEC_N`` (default 20,000) calls, since the machine is shared; for a
count that does not depend on the neighbours, run one row under ``perf stat -e
instructions`` with ``BENCH_CODEC_ONLY="<row> <variant>"`` (e.g. ``"deliver_sm fast"``).
Run: ``make bench BENCH=codec`` or ``python -m bench.run_codec``.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import Any

from gateway.edges.smpp import codec

N = int(os.environ.get("BENCH_CODEC_N", "20000"))
REPEATS = int(os.environ.get("BENCH_CODEC_REPEATS", "5"))
ONLY = os.environ.get("BENCH_CODEC_ONLY", "")


def _deliver_sm(message: bytes, tlvs: bytes = b"", esm_class: int = 0) -> bytes:
    # SMPP 3.4 §4.6.1, laid out by hand; source TON/NPI 1/1 as the simulator sends it.
    body = (
        b"\x00\x01\x0114165550123\x00\x00\x0012345\x00" + bytes([esm_class, 0, 0])
        + b"\x00\x00\x00\x00\x00\x00" + bytes([len(message)]) + message + tlvs
    )  # fmt: skip
    return struct.pack(">LLLL", 16 + len(body), codec.DELIVER_SM, 0, 42) + body


STOP = _deliver_sm(b"STOP")
SAR_PART = _deliver_sm(
    b"STOP sending me these", struct.pack(">HHHHHBHHB", 0x020C, 2, 7, 0x020E, 1, 2, 0x020F, 1, 1)
)
RECEIPT = _deliver_sm(
    b"id:0000002a sub:001 dlvrd:001 submit date:2612021200 done date:2612021200 stat:DELIVRD"
    b" err:000 text:",
    struct.pack(">HH", 0x001E, 9) + b"0000002a\x00" + struct.pack(">HHB", 0x0427, 1, 2),
    esm_class=0x04,
)
SUBMIT_RESP = struct.pack(">LLLL", 25, codec.SUBMIT_SM | codec.RESPONSE_BIT, 0, 7) + b"0000002a\x00"
REPLY: dict[str, Any] = {
    "source_addr_ton": 0, "source_addr_npi": 1, "source_addr": "12345", "dest_addr_ton": 1,
    "dest_addr_npi": 1, "destination_addr": "14165550123", "esm_class": 0, "data_coding": 0,
    "registered_delivery": 0,
    "short_message": b"Acme Health: You're unsubscribed and will get no more msgs. Reply"
    b" START to rejoin, HELP for help.",
}  # fmt: skip

Row = tuple[str, Callable[[], object], Callable[[], object]]
ROWS: list[Row] = [
    ("deliver_sm", lambda: codec.reference_decode(STOP), lambda: codec.decode(STOP)),
    ("deliver_sm SAR", lambda: codec.reference_decode(SAR_PART), lambda: codec.decode(SAR_PART)),
    ("deliver_sm receipt", lambda: codec.reference_decode(RECEIPT), lambda: codec.decode(RECEIPT)),
    ("submit_sm_resp", lambda: codec.reference_decode(SUBMIT_RESP),
     lambda: codec.decode(SUBMIT_RESP)),
    ("submit_sm", lambda: codec.reference_encode("submit_sm", 9, **REPLY),
     lambda: codec.encode("submit_sm", 9, **REPLY)),
    ("deliver_sm_resp", lambda: codec.reference_encode("deliver_sm_resp", 9),
     lambda: codec.encode("deliver_sm_resp", 9)),
    ("enquire_link_resp", lambda: codec.reference_encode("enquire_link_resp", 9),
     lambda: codec.encode("enquire_link_resp", 9)),
]  # fmt: skip


def rate(call: Callable[[], object]) -> float:
    """Calls per second: the best of REPEATS rounds of N calls."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(N):
            call()
        best = min(best, time.perf_counter() - started)
    return N / best


def main() -> None:
    """Print one row per PDU: smpplib's rate, the fast path's, and their ratio."""
    if ONLY:  # one row, one variant: for perf stat / callgrind
        row, variant = ONLY.rsplit(" ", 1)
        for name, reference, fast in ROWS:
            if name == row:
                call = fast if variant == "fast" else reference
                for _ in range(N):
                    call()
                return
        raise SystemExit(f"no row {row!r}")
    print(f"{time.strftime('%Y-%m-%d')}, best of {REPEATS} x {N} calls, one core")
    print(f"{'PDU':20} {'smpplib/s':>11} {'fast/s':>11} {'ratio':>7}")
    for name, reference, fast in ROWS:
        before, after = rate(reference), rate(fast)
        print(f"{name:20} {before:11,.0f} {after:11,.0f} {after / before:7.1f}")


if __name__ == "__main__":
    main()
