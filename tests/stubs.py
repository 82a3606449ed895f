"""A stand-in for the pipeline, and the HTTP app around it, for the edges' wire-mapping
tests: no database, no writer.

Every edge hands an ``InboundMessage`` to ``Pipeline.handle`` and answers its peer from what
comes back: an ``Outcome`` (acknowledge) or a ``GatewayError`` (refuse, for good or for now).
``StubPipeline`` records what it was handed and answers what the test chose, so that a test
can hold each answer against the protocol's code for it (HTTP status, SMTP reply, SMPP
command_status) without committing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeAlias, cast

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import SECRET

from gateway.edges.http.client_address import register_trusted
from gateway.edges.http.server import HttpDeps, Register, build_app
from gateway.gate import SendGate
from gateway.health import Readiness
from gateway.messages import InboundMessage, Outcome, OutcomeStatus
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.security.signing import WEBHOOK_PURPOSE, derive_key
from keywords.model import Action, ConsentState, Decision, Intent, IntentKind, MatchKind, Transition

Answer: TypeAlias = Outcome | Exception
Answers: TypeAlias = Answer | Callable[[InboundMessage], Answer]
KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)  # what the webhooks' signatures use
MAX_BODY = 64 * 1024
HttpClient: TypeAlias = TestClient[web.Request, web.Application]


def committed(
    kind: IntentKind = IntentKind.OPT_OUT_ALL, *, program: str = "reminders", replies: int = 1
) -> Outcome:
    """A new commit of ``kind`` that changed one program and queued ``replies`` replies."""
    intent = Intent(kind, MatchKind.EXACT, keyword=kind.value)
    out = kind in (IntentKind.OPT_OUT, IntentKind.OPT_OUT_ALL)
    transition = Transition(
        program,
        ConsentState.OPTED_IN if out else ConsentState.NONE,
        ConsentState.OPTED_OUT if out else ConsentState.OPTED_IN,
        Action.OPT_OUT if out else Action.OPT_IN,
    )
    return Outcome(
        OutcomeStatus.COMMITTED,
        inbound_id=41,
        decision=Decision(intent, transitions=(transition,)),
        ledger_seqs=(7,),
        outbox_ids=tuple(range(90, 90 + replies)),
    )


def unchanged(kind: IntentKind = IntentKind.OPT_OUT_ALL) -> Outcome:
    """A new commit that changed nothing (an opt-out of someone already out)."""
    return Outcome(
        OutcomeStatus.COMMITTED,
        inbound_id=42,
        decision=Decision(Intent(kind, MatchKind.EXACT, keyword=kind.value)),
    )


def duplicate() -> Outcome:
    """A redelivery: recorded earlier, acknowledged again."""
    return Outcome(OutcomeStatus.DUPLICATE, inbound_id=41, decision=None)


class StubPipeline:
    """``Pipeline.handle`` as an edge sees it: records each message, answers ``answer``.

    ``answer`` is an ``Outcome`` to return, an exception to raise, or a function of the
    message giving either. While ``hold`` is set, ``handle`` waits for ``release()`` first,
    so that a test can see what the edge answers before the "commit" returns.
    """

    def __init__(self, answer: Answers | None = None, *, hold: bool = False) -> None:
        self.answer: Answers = committed() if answer is None else answer
        self.messages: list[InboundMessage] = []
        self.entered = asyncio.Event()  # set once a message is in handle()
        self._release = asyncio.Event()
        if not hold:
            self._release.set()

    def hold(self) -> None:
        """Hold the calls from now on, until ``release()``."""
        self.entered.clear()
        self._release.clear()

    def release(self) -> None:
        """Let held and later calls return."""
        self._release.set()

    async def handle(self, message: InboundMessage) -> Outcome:
        """Record ``message``; return or raise what the test chose."""
        self.messages.append(message)
        self.entered.set()
        await self._release.wait()
        answer = self.answer(message) if callable(self.answer) else self.answer
        if isinstance(answer, Exception):
            raise answer
        return answer


def stub_http_app(
    pipeline: StubPipeline, modules: Iterable[Register], *, max_body_bytes: int = MAX_BODY
) -> web.Application:
    """The gateway's HTTP app (``build_app``: its error middleware, its ``Server`` field)
    with ``modules``, in front of ``pipeline``. Signatures verify with ``KEY``; no trusted
    proxies. The gate, readiness and pool are absent: routes that need them need the
    gateway (``Gateway``), not this."""
    deps = HttpDeps(
        pipeline=cast(Pipeline, pipeline),  # HttpDeps names the class; the stub has its method
        gate=cast(SendGate, None),
        readiness=cast(Readiness, None),
        pool=cast(asyncpg.Pool, None),
        metrics=Metrics(),
        webhook_key=KEY,
        webhook_previous_keys=(),
        max_body_bytes=max_body_bytes,
        signature_tolerance=300,
        body_timeout=5.0,
    )
    return build_app(deps, [register_trusted(()), *modules])


@asynccontextmanager
async def http_client(app: web.Application) -> AsyncIterator[HttpClient]:
    """A client of ``app`` served by aiohttp's ``TestServer``: real HTTP on 127.0.0.1."""
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client
