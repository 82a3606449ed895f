"""The SMPP edge (I/O layer): deliver_sm in, pipeline, deliver_sm_resp; replies by submit_sm.

The adapter does three things: wire format to ``InboundMessage``; ``Pipeline.handle``; the
typed outcome to a command_status, here and nowhere else (SMPP 3.4 §5.1.3):

- committed or duplicate                -> ESME_ROK (only after the commit, README)
- ``TemporaryFailure`` (no commit)       -> ESME_RX_T_APPN: the SMSC redelivers later
- ``UnknownSender`` / ``InvalidAddress`` -> ESME_RINVDSTADR / ESME_RINVSRCADR
- any other ``BadInput``, binary text    -> ESME_RX_P_APPN: permanent, nothing written

Redeliveries: a 3.4 deliver_sm carries no SMSC message id, so the dedupe key is a digest of
SMSC, source, destination and body, plus a time bucket of ``dedupe_window_seconds``. The
edge also remembers each source's latest key for the window: a copy of the latest text
reuses it even across a bucket boundary, while the same text sent again after a different
one (STOP, START, STOP) gets a fresh key and is not mistaken for a redelivery.

Parts of a long text are each committed and acknowledged on their own (``reassembly.py``);
the text they make is keyed by the store's id of their set and the number of parts handed
over, the same on every instance and after a restart.

Replies (``SmppSender``) leave by submit_sm through a bound SMSC that carries the sender.
Delivery is at least once: a crash after submit_sm but before the outbox records the
result sends that reply again when the row's lease expires (outbox.lease_seconds). We
prefer a rare second copy of a confirmation to a lost one: a STOP must always be answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Container
from datetime import UTC, datetime
from typing import Protocol

from gateway.edges.smpp import codec
from gateway.edges.smpp.codec import Pdu
from gateway.edges.smpp.config import SmppSettings
from gateway.edges.smpp.reassembly import PartStore, Reassembler, join_parts
from gateway.edges.smpp.receipts import is_receipt, parse_receipt
from gateway.edges.smpp.session import Session, SessionError
from gateway.edges.smpp.text import Concat, UndecodableText, decode_text, encode_reply, split_udh
from gateway.errors import BadInput, InvalidAddress, TemporaryFailure, UnknownSender
from gateway.logs import mask_address
from gateway.messages import InboundMessage, Method, Outcome, SmsPartSet
from gateway.senders.base import OutboxRow, SendError
from keywords.model import Channel

log = logging.getLogger(__name__)

_RECEIPT_MATCH_TRIES = 3  # answers RX_T_APPN to a receipt that beat its submit's record


class Spawn(Protocol):
    """The composition root's supervised start (``Gateway._spawn``)."""

    def __call__(
        self, name: str, factory: Callable[[], Awaitable[None]], *, returns: bool = ...
    ) -> None:
        """Run ``factory()`` as the long-running task ``name``."""


class InboundPipeline(Protocol):
    """``gateway.pipeline.Pipeline`` as the edge sees it."""

    async def handle(self, message: InboundMessage) -> Outcome:
        """Commit ``message``; raise ``BadInput`` or ``TemporaryFailure``."""


class ReceiptRecorder(Protocol):
    """``gateway.store.receipts.ReceiptStore`` as the edge sees it."""

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
        """Record a receipt; return the outbox id, or None when unmatched."""


class SmppEdge:
    """Every SMSC bind, the inbound adapter and the outbound sender."""

    def __init__(
        self,
        settings: SmppSettings,
        pipeline: InboundPipeline,
        receipts: ReceiptRecorder,
        parts: PartStore,
        *,
        senders: Container[str] | None = None,
        on_reply_queued: Callable[[], None] = lambda: None,
        on_bound: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._pipeline = pipeline
        self._receipts = receipts
        # The senders we serve, when known: a part for another is refused before it is stored.
        self._senders = senders
        self._on_reply_queued = on_reply_queued
        self.sessions: list[Session] = []
        for smsc in settings.smscs:
            roles = ("transceiver",) if smsc.bind == "transceiver" else ("receiver", "transmitter")
            self.sessions.extend(Session(smsc, role, self, on_bound) for role in roles)
        self._reassembler = Reassembler(
            parts,
            self._hand_off,
            timeout=settings.reassembly_timeout_seconds,
            keep=settings.dedupe_window_seconds,
        )
        self._latest: OrderedDict[tuple[str, str, str], tuple[str, str, float]] = OrderedDict()
        self._receipt_tries: dict[str, int] = {}
        self.sender = SmppSender(self)

    def start(self, spawn: Spawn) -> None:
        """Start every bind and the reassembly sweep as supervised loops; the gateway starts
        even while an SMSC is down. A session's loop returns only after ``close``; anything
        else restarts it, as it does the sweep."""
        for session in self.sessions:
            spawn(f"smpp-{session.name}", session.run, returns=True)
        spawn("smpp-reassembly", self._reassembler.run)

    def binds_up(self) -> dict[str, int]:
        """Bound sessions per SMSC (the ``gateway_smpp_binds_up`` gauge)."""
        up: dict[str, int] = {smsc.name: 0 for smsc in self.settings.smscs}
        for session in self.sessions:
            if session.bound.is_set():
                up[session.smsc.name] += 1
        return up

    async def close(self) -> None:
        """Drain deliver_sm in hand, unbind every session.

        Each session's loop then returns on its own; the supervisor stops the sweep and what
        is left.
        """
        timeout = self.settings.shutdown_timeout_seconds
        await asyncio.gather(*(s.close(timeout) for s in self.sessions))

    # ---- inbound --------------------------------------------------------------------------

    async def on_deliver(self, session: Session, pdu: Pdu) -> int:
        """One deliver_sm: a receipt, a part of a long text, or a whole text."""
        esm_class = pdu.integer("esm_class")
        coding = pdu.integer("data_coding")
        # SMPP 3.4 §5.3.2.32: message_payload carries the text when short_message is empty.
        message = pdu.octets("short_message") or pdu.tlvs.get(codec.TAG_MESSAGE_PAYLOAD, b"")
        try:
            concat, body = split_udh(message) if esm_class & 0x40 else (None, message)
            if is_receipt(esm_class):
                return await self._receipt(session, pdu, decode_text(body, coding))
            concat = concat or _sar(pdu)
        except UndecodableText as exc:
            log.info("smpp text refused", extra={"smsc": session.name, "reason": str(exc)})
            return codec.ESME_RX_P_APPN
        source = _source(pdu)
        dest = pdu.cstr("destination_addr")
        if concat is None or concat.total == 1:
            return await self._commit(session, source, dest, body, coding)
        try:
            decode_text(body, coding)  # a binary or broken part is refused before it is kept
        except UndecodableText:
            return codec.ESME_RX_P_APPN
        if self._senders is not None and dest not in self._senders:
            return codec.ESME_RINVDSTADR
        return await self._reassembler.add(session.smsc.name, source, dest, concat, coding, body)

    async def _commit(
        self, session: Session, source: str, dest: str, data: bytes, coding: int
    ) -> int:
        """A text in one deliver_sm: the common case, with no round trip but the pipeline's."""
        try:
            text = decode_text(data, coding, default_alphabet=self.settings.default_alphabet)
        except UndecodableText:
            return codec.ESME_RX_P_APPN
        now = datetime.now(UTC)
        # "-1:1:" (no reference, one part) keeps the keys of earlier releases.
        key = self._dedupe_key(session.smsc.name, source, dest, b"-1:1:" + data)
        message = InboundMessage(
            channel=Channel.SMS,
            sender=dest,
            contact=source,
            text=text,
            method=Method.SMS_KEYWORD,
            dedupe_key=key,
            received_at=now,
            evidence={
                "source": "smpp",
                "smsc": session.smsc.name,
                "data_coding": str(coding),
                "parts": "1",
            },
        )
        return await self._submit(message)

    async def _hand_off(self, part_set: SmsPartSet) -> int:
        """The text of a set of parts through the pipeline (the reassembler calls this)."""
        text = join_parts(part_set, self.settings.default_alphabet)
        missing = part_set.missing
        if missing:
            log.info(
                "smpp text handed over with parts missing",
                extra={"smsc": part_set.smsc, "set": part_set.id, "parts": part_set.total,
                       "missing": len(missing)},
            )  # fmt: skip
        message = InboundMessage(
            channel=Channel.SMS,
            sender=part_set.destination,
            contact=part_set.source,
            text=text,
            method=Method.SMS_KEYWORD,
            # The set and how many of its parts: a repeated hand-off (a redelivered part, a
            # crash before the store heard the answer) finds its event; a later one with
            # more parts (one that came after the timeout) is a text of its own.
            dedupe_key=f"smpp:{part_set.smsc}:set:{part_set.id}:{len(part_set.seqs)}",
            received_at=part_set.received_at,
            evidence={
                "source": "smpp",
                "smsc": part_set.smsc,
                "data_coding": ",".join(str(c) for c in dict.fromkeys(part_set.codings)),
                "parts": str(part_set.total),
                "parts_missing": ",".join(str(n) for n in missing),
            },
            partial=bool(missing),
        )
        return await self._submit(message)

    async def _submit(self, message: InboundMessage) -> int:
        try:
            outcome = await self._pipeline.handle(message)
        except TemporaryFailure:
            return codec.ESME_RX_T_APPN
        except UnknownSender:
            return codec.ESME_RINVDSTADR
        except InvalidAddress:
            return codec.ESME_RINVSRCADR
        except BadInput:
            return codec.ESME_RX_P_APPN
        if outcome.outbox_ids:
            self._on_reply_queued()
        return codec.ESME_ROK

    def _dedupe_key(self, smsc: str, source: str, dest: str, data: bytes) -> str:
        window = self.settings.dedupe_window_seconds
        digest = hashlib.sha256(b"\x00".join((smsc.encode(), source.encode(), dest.encode(), data)))
        content = digest.hexdigest()[:32]
        now = time.monotonic()
        while self._latest:  # forget sources quiet for longer than the window
            oldest_key, (_, _, seen) = next(iter(self._latest.items()))
            if now - seen < window:
                break
            self._latest.pop(oldest_key)
        slot = (smsc, source, dest)
        latest = self._latest.pop(slot, None)
        if latest is not None and latest[0] == content:
            key = latest[1]  # a copy of this source's latest text: a redelivery
        else:
            key = f"smpp:{smsc}:{content}:{int(time.time() // window)}"
            if latest is not None:
                # The same words after different ones are a new message (STOP, START, STOP).
                key += f":{time.time_ns()}"
        self._latest[slot] = (content, key, now)
        return key

    async def _receipt(self, session: Session, pdu: Pdu, text: str) -> int:
        receipt = parse_receipt(pdu, text)
        if receipt is None:
            log.info("smpp receipt without a message id", extra={"smsc": session.name})
            return codec.ESME_ROK
        smsc = session.smsc.name
        tries = self._receipt_tries.get(f"{smsc}/{receipt.message_id}", 0)
        try:
            outbox_id = await self._receipts.record(
                smsc, receipt.message_id, receipt.state, receipt.error, receipt.done_at,
                require_match=tries < _RECEIPT_MATCH_TRIES,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - unrecorded for any reason: RX_T_APPN, the SMSC resends
            log.warning("smpp receipt not recorded; SMSC will retry", extra={"smsc": smsc})
            return codec.ESME_RX_T_APPN
        ref = f"{smsc}/{receipt.message_id}"
        if outbox_id is None and tries < _RECEIPT_MATCH_TRIES:
            # Most likely the receipt overtook the outbox's record of our submit_sm.
            self._receipt_tries[ref] = tries + 1
            return codec.ESME_RX_T_APPN
        self._receipt_tries.pop(ref, None)
        return codec.ESME_ROK

    # ---- outbound -------------------------------------------------------------------------

    def submitting(self) -> list[Session]:
        """Sessions bound and able to submit (transmitter or transceiver), for any sender."""
        return [s for s in self.sessions if s.can_submit and s.bound.is_set()]

    def sessions_for(self, sender: str) -> list[Session]:
        """Bound sessions able to submit for ``sender`` (its routes, else the only SMSC)."""
        names = self.settings.routes.get(sender)
        if names is None and len(self.settings.smscs) == 1:
            names = (self.settings.smscs[0].name,)
        return [s for s in self.submitting() if names and s.smsc.name in names]


class SmppSender:
    """The outbox's way out for SMS: submit_sm, split with a UDH when long."""

    def __init__(self, edge: SmppEdge) -> None:
        self._edge = edge
        self._turn = itertools.count()

    def available(self) -> bool:
        """Whether some SMSC is bound and open for submits (its own senders checked later)."""
        return bool(self._edge.submitting())

    async def send(self, row: OutboxRow) -> str | None:
        """Submit ``row``; return ``"<smsc>/<id> ..."`` (one per part) or raise ``SendError``."""
        edge = self._edge
        if row.sender not in edge.settings.routes and len(edge.settings.smscs) != 1:
            raise SendError("no SMSC carries this sender", temporary=False)
        sessions = edge.sessions_for(row.sender)
        if not sessions:
            # Nothing left: the attempt is given back (gateway/senders/base.py), and the
            # bind's return brings the row forward (OutboxWorker.channel_ready).
            raise SendError("no SMSC bound for this sender", temporary=True, attempted=False)
        session = sessions[next(self._turn) % len(sessions)]
        smsc = session.smsc
        destination = row.recipient.removeprefix("+")
        if not (destination.isascii() and destination.isdigit()):
            # Only an E.164 number may reach the wire (gateway/addresses.py makes every
            # contact one); anything else fails this row, never the outbox worker.
            raise SendError("recipient is not an E.164 number", temporary=False)
        coding, parts = encode_reply(row.body, ref=row.id)
        if row.sender.startswith("+"):
            source_ton, source_npi, source = 1, 1, row.sender[1:]
        else:
            source_ton, source_npi, source = smsc.source_ton, smsc.source_npi, row.sender
        refs = []
        for part in parts:
            try:
                message_id = await session.submit(
                    source_addr_ton=source_ton,
                    source_addr_npi=source_npi,
                    source_addr=source,
                    dest_addr_ton=smsc.dest_ton,
                    dest_addr_npi=smsc.dest_npi,
                    destination_addr=destination,
                    esm_class=0x40 if len(parts) > 1 else 0x00,  # UDH indicator
                    data_coding=coding,
                    registered_delivery=1 if smsc.registered_delivery else 0,
                    short_message=part,
                )
            except SessionError as exc:
                log.info(
                    "smpp submit failed",
                    extra={"smsc": session.name, "recipient": mask_address(row.recipient),
                           "error": str(exc), "temporary": exc.temporary},
                )  # fmt: skip
                raise SendError(str(exc), temporary=exc.temporary) from exc
            refs.append(f"{smsc.name}/{message_id}")
        return " ".join(refs)


def _source(pdu: Pdu) -> str:
    source = pdu.cstr("source_addr")
    # SMPP 3.4 §5.2.5: TON 1 is an international number, sent without the "+".
    if pdu.integer("source_addr_ton") == 1 and source and not source.startswith("+"):
        return "+" + source
    return source


def _sar(pdu: Pdu) -> Concat | None:
    """Concatenation from SAR TLVs (SMPP 3.4 §5.3.2.22-24), when present and sane."""
    ref = pdu.tlv_int(codec.TAG_SAR_MSG_REF_NUM)
    total = pdu.tlv_int(codec.TAG_SAR_TOTAL_SEGMENTS)
    seq = pdu.tlv_int(codec.TAG_SAR_SEGMENT_SEQNUM)
    if ref is None or total is None or seq is None:
        return None
    # §5.3.2.22-24: a 2-octet reference, 1-octet counts.
    if not (1 <= seq <= total <= 0xFF and 0 <= ref <= 0xFFFF):
        raise UndecodableText("SAR segment number out of range")
    return Concat(ref, total, seq)
