"""The SMPP edge's wire mapping, in process: the deliver_sm_resp command_status for each answer.

The edge is the gateway's own ``SmppEdge`` with its ``Session``, bound as a transceiver to a
small SMSC written here (SMPP 3.4 PDUs packed by hand with ``struct``, sharing nothing with
the codec under test) on 127.0.0.1, in front of a ``StubPipeline`` and in-memory receipt and
part stores: no database and no gateway. The SMSC sends deliver_sm and reads the
command_status of each deliver_sm_resp. The same answers through node-smpp and real commits
are in ``test_smpp_inbound.py`` and ``test_smpp_long_texts.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from stubs import Answer, StubPipeline, committed, duplicate, unchanged
from support import eventually

from gateway.edges.smpp.config import SmppSettings, SmscSettings
from gateway.edges.smpp.edge import SmppEdge
from gateway.errors import BadInput, InvalidAddress, Suppressed, TemporaryFailure, UnknownSender
from gateway.messages import Method, SmsPartSet
from keywords.model import Channel

ROK, RINVSRCADR, RINVDSTADR, RX_T_APPN, RX_P_APPN = 0x00, 0x0A, 0x0B, 0x64, 0x65
BIND_TRANSCEIVER, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x09, 0x05, 0x06, 0x15
RESPONSE = 0x80000000
SOURCE, SHORT_CODE = "14155550123", "12345"


def _pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command_id, status, sequence) + body


def _cstr(value: str) -> bytes:
    return value.encode("ascii") + b"\x00"


def deliver_sm(
    sequence: int,
    short_message: bytes,
    *,
    data_coding: int = 0,
    esm_class: int = 0,
    source: str = SOURCE,
    dest: str = SHORT_CODE,
) -> bytes:
    """A deliver_sm (SMPP 3.4 section 4.6.1), field by field."""
    body = (
        _cstr("")  # service_type
        + bytes([1, 1])  # source_addr_ton, source_addr_npi
        + _cstr(source)
        + bytes([0, 0])  # dest_addr_ton, dest_addr_npi
        + _cstr(dest)
        + bytes([esm_class, 0, 0])  # esm_class, protocol_id, priority_flag
        + _cstr("")  # schedule_delivery_time
        + _cstr("")  # validity_period
        + bytes([0, 0, data_coding, 0, len(short_message)])  # ..., sm_default_msg_id, sm_length
        + short_message
    )
    return _pdu(DELIVER_SM, sequence, body)


class Smsc:
    """An SMSC that takes one bind, answers enquire_link and unbind, and sends deliver_sm."""

    def __init__(self) -> None:
        self.port = 0
        self.bound = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._answers: dict[int, asyncio.Future[int]] = {}
        self._sequence = itertools.count(1)

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop the connection."""
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        try:
            while True:
                head = await reader.readexactly(16)
                length, command_id, status, sequence = struct.unpack(">LLLL", head)
                await reader.readexactly(length - 16)  # a bind's fields, or nothing
                if command_id == BIND_TRANSCEIVER:
                    writer.write(_pdu(RESPONSE | BIND_TRANSCEIVER, sequence, _cstr("smsc")))
                    self.bound.set()
                elif command_id in (ENQUIRE_LINK, UNBIND):
                    writer.write(_pdu(RESPONSE | command_id, sequence))
                elif command_id == RESPONSE | DELIVER_SM:
                    answer = self._answers.pop(sequence, None)
                    if answer is not None:
                        answer.set_result(status)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def send(
        self, short_message: bytes, *, data_coding: int = 0, esm_class: int = 0
    ) -> asyncio.Future[int]:
        """Send a deliver_sm; the future gets the command_status of its deliver_sm_resp."""
        assert self._writer is not None
        sequence = next(self._sequence)
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._answers[sequence] = answer
        pdu = deliver_sm(sequence, short_message, data_coding=data_coding, esm_class=esm_class)
        self._writer.write(pdu)
        return answer

    async def deliver(
        self, short_message: bytes, *, data_coding: int = 0, esm_class: int = 0
    ) -> int:
        """Send a deliver_sm and wait for its command_status."""
        answer = self.send(short_message, data_coding=data_coding, esm_class=esm_class)
        return await asyncio.wait_for(answer, 5)


class Receipts:
    """Delivery receipts recorded in memory; while ``fail`` is set, recording raises it, and
    while ``matches`` is false, a receipt matches no submit."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []
        self.fail: Exception | None = None
        self.matches = True

    async def record(
        self,
        smsc: str,
        message_id: str,
        state: str,
        error: str,
        done_at: datetime | None,
        *,
        require_match: bool,
    ) -> int | None:
        """Keep (smsc, message id, state); the outbox id 1 while ``matches``."""
        if self.fail is not None:
            raise self.fail
        if not self.matches and require_match:
            return None
        self.recorded.append((smsc, message_id, state))
        return 1 if self.matches else None


@dataclass
class Parts:
    """Parts of long texts kept in memory; a set is handed over once all its parts are in."""

    parts: dict[tuple[str, int], dict[int, tuple[int, bytes]]] = field(default_factory=dict)
    fail: Exception | None = None
    handed: list[int] = field(default_factory=list)

    async def add(
        self,
        smsc: str,
        source: str,
        destination: str,
        ref: int,
        total: int,
        seq: int,
        data_coding: int,
        body: bytes,
    ) -> SmsPartSet | None:
        """Keep the part; the set when it is whole."""
        if self.fail is not None:
            raise self.fail
        held = self.parts.setdefault((source, ref), {})
        held[seq] = (data_coding, body)
        if len(held) < total:
            return None
        seqs = tuple(sorted(held))
        return SmsPartSet(
            id=ref, smsc=smsc, source=source, destination=destination, ref=ref, total=total,
            seqs=seqs, codings=tuple(held[n][0] for n in seqs),
            bodies=tuple(held[n][1] for n in seqs), received_at=datetime.now(UTC),
        )  # fmt: skip

    async def claim_due(self, timeout_seconds: float, limit: int) -> list[SmsPartSet]:
        """Nothing is due: the sweep is not running here."""
        return []

    async def handed_off(self, part_set: SmsPartSet) -> None:
        """Note the hand-over."""
        self.handed.append(part_set.id)

    async def purge(self, keep_seconds: float) -> int:
        """Nothing to forget."""
        return 0


@dataclass
class Bound:
    """The edge bound to the SMSC, and what stands behind it."""

    smsc: Smsc
    edge: SmppEdge
    pipeline: StubPipeline
    receipts: Receipts
    parts: Parts


@pytest.fixture
async def bound() -> AsyncIterator[Bound]:
    """An ``SmppEdge`` whose one transceiver session is bound to the SMSC."""
    smsc = Smsc()
    await smsc.start()
    smsc_settings = SmscSettings(
        host="127.0.0.1", port=smsc.port, system_id="gateway", name="fake", password="secret",
        response_timeout_seconds=2.0, reconnect_min_seconds=0.05, reconnect_max_seconds=0.5,
    )  # fmt: skip
    settings = SmppSettings(
        shutdown_timeout_seconds=2.0, smscs=(smsc_settings,), routes={SHORT_CODE: ("fake",)}
    )
    pipeline, receipts, parts = StubPipeline(), Receipts(), Parts()
    edge = SmppEdge(settings, pipeline, receipts, parts, senders={SHORT_CODE})
    [session] = edge.sessions
    running = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(smsc.bound.wait(), 5)
        await asyncio.wait_for(session.bound.wait(), 5)
        yield Bound(smsc, edge, pipeline, receipts, parts)
    finally:
        await edge.close()
        # Closed, the session's loop ends by itself; its reader was cancelled, so the task
        # may end cancelled: waited for, not awaited, so that this does not raise here.
        await asyncio.wait([running], timeout=5)
        assert running.done()
        await smsc.close()


async def test_a_committed_text_is_rok_and_the_message_is_the_pdus(bound: Bound) -> None:
    """ESME_ROK after the commit; the pipeline got the text, the numbers (an international
    source gets its "+"), the SMSC."""
    assert ROK == await bound.smsc.deliver(b"STOP")
    [message] = bound.pipeline.messages
    assert (Channel.SMS, SHORT_CODE, "+" + SOURCE, "STOP", Method.SMS_KEYWORD) == (
        message.channel,
        message.sender,
        message.contact,
        message.text,
        message.method,
    )
    assert ("smpp", "fake", "0") == (
        message.evidence["source"],
        message.evidence["smsc"],
        message.evidence["data_coding"],
    )
    assert message.dedupe_key.startswith("smpp:fake:")


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (committed(), ROK),
        (unchanged(), ROK),
        (duplicate(), ROK),
        (TemporaryFailure("could not commit"), RX_T_APPN),
        (UnknownSender("not a configured sender"), RINVDSTADR),
        (InvalidAddress("not a phone number"), RINVSRCADR),
        (Suppressed("erased"), RX_P_APPN),
        (BadInput("message id too long", code="bad_message_id"), RX_P_APPN),
        (RuntimeError("a bug of ours"), RX_T_APPN),
    ],
    ids=[
        "committed", "unchanged", "duplicate", "temporary", "unknown_sender",
        "invalid_address", "suppressed", "bad_input", "bug",
    ],
)  # fmt: skip
async def test_each_pipeline_answer_has_its_command_status(
    bound: Bound, answer: Answer, status: int
) -> None:
    """SMPP 3.4 section 5.1.3 as the edge maps it: ack only a commit; not now (the SMSC
    delivers again) for nothing committed and for a bug of ours; the address refusals by
    name; any other refusal for good RX_P_APPN."""
    bound.pipeline.answer = answer
    assert status == await bound.smsc.deliver(b"STOP")
    assert 1 == len(bound.pipeline.messages)


async def test_the_resp_waits_for_the_commit(bound: Bound) -> None:
    """No deliver_sm_resp while the commit is in hand; ESME_ROK as soon as it returns, and
    a second text meanwhile is answered on its own (docs/DESIGN.md, invariant 1)."""
    held = bound.pipeline
    held.hold()
    first = bound.smsc.send(b"STOP")
    second = bound.smsc.send(b"HELP")
    await eventually(lambda: len(held.messages) == 2, message="both texts never in handle()")
    assert (False, False) == (first.done(), second.done())
    held.release()
    assert (ROK, ROK) == tuple(await asyncio.wait_for(asyncio.gather(first, second), 5))


async def test_text_that_cannot_be_read_is_rx_p_appn_before_the_pipeline(bound: Bound) -> None:
    """Binary data (data_coding 4) and UCS-2 with an odd octet count are refused for good,
    the pipeline never asked (docs/DESIGN.md, invariant 7)."""
    assert RX_P_APPN == await bound.smsc.deliver(b"\x01\x02", data_coding=4)
    assert RX_P_APPN == await bound.smsc.deliver(b"\x00S\x00", data_coding=8)
    assert [] == bound.pipeline.messages


async def test_a_part_is_acked_once_stored_and_the_last_answers_for_the_text(
    bound: Bound,
) -> None:
    """Parts of a long text (UDH, esm_class 0x40): each is ESME_ROK once its store has it;
    the part that completes the set answers with the whole text's status; a part its store
    could not keep is RX_T_APPN."""
    bound.pipeline.answer = TemporaryFailure("could not commit")
    assert ROK == await bound.smsc.deliver(_udh(7, 2, 1) + b"STOP ", esm_class=0x40)
    assert RX_T_APPN == await bound.smsc.deliver(_udh(7, 2, 2) + b"now", esm_class=0x40)
    [message] = bound.pipeline.messages
    assert ("STOP now", "smpp:fake:set:7:2") == (message.text, message.dedupe_key)
    assert [] == bound.parts.handed  # not answered ROK: the set is handed over again
    bound.parts.fail = TemporaryFailure("could not store")
    assert RX_T_APPN == await bound.smsc.deliver(_udh(8, 2, 1) + b"STOP", esm_class=0x40)


def _udh(ref: int, total: int, seq: int) -> bytes:
    """A user data header with the 8-bit concatenation element (3GPP TS 23.040 9.2.3.24.1)."""
    return bytes([5, 0, 3, ref, total, seq])


RECEIPT = b"id:abc123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD"


async def test_receipts_are_rok_once_recorded_and_rx_t_appn_until_then(
    bound: Bound, caplog: pytest.LogCaptureFixture
) -> None:
    """A delivery receipt (esm_class 0x04) recorded: ESME_ROK. One the store failed to
    record, whatever the failure: RX_T_APPN and a warning, so that the SMSC sends it again.
    One that matches no submit yet: RX_T_APPN a few times, then ESME_ROK."""
    caplog.set_level(logging.WARNING, logger="gateway.edges.smpp.edge")
    assert ROK == await bound.smsc.deliver(RECEIPT, esm_class=0x04)
    assert [("fake", "abc123", "DELIVRD")] == bound.receipts.recorded
    bound.receipts.fail = ConnectionResetError("database gone")
    assert RX_T_APPN == await bound.smsc.deliver(RECEIPT, esm_class=0x04)
    bound.receipts.fail = KeyError("a bug in the store")
    assert RX_T_APPN == await bound.smsc.deliver(RECEIPT, esm_class=0x04)
    assert 2 == len([r for r in caplog.records if "receipt not recorded" in r.getMessage()])
    bound.receipts.fail, bound.receipts.matches = None, False
    answers = [await bound.smsc.deliver(RECEIPT, esm_class=0x04) for _ in range(4)]
    assert [RX_T_APPN, RX_T_APPN, RX_T_APPN, ROK] == answers
    assert [] == bound.pipeline.messages


async def test_a_closing_edge_answers_new_texts_rx_t_appn_and_finishes_those_in_hand(
    bound: Bound,
) -> None:
    """On shutdown the session refuses new deliver_sm for now and answers those whose
    commit is in hand once it returns, before it unbinds."""
    held = bound.pipeline
    held.hold()
    in_hand = bound.smsc.send(b"STOP")
    await asyncio.wait_for(held.entered.wait(), 5)
    closing = asyncio.create_task(bound.edge.close())
    [session] = bound.edge.sessions
    await eventually(lambda: session._draining, message="the session never began to drain")
    assert RX_T_APPN == await bound.smsc.deliver(b"START")
    held.release()
    assert ROK == await asyncio.wait_for(in_hand, 5)
    await asyncio.wait_for(closing, 5)
    assert ["STOP"] == [m.text for m in held.messages]
