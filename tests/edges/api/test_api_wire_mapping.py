"""The provider webhook's wire mapping, in process: TwiML, status codes and the message it
hands on, for each pipeline answer.

The route is the gateway's (``webhooks.register`` inside ``build_app``) with the API's
dependencies as ``ApiEdge.http_modules`` sets them, served by aiohttp's ``TestServer`` on
127.0.0.1 in front of a ``StubPipeline``. The route reads only the Twilio settings of those
dependencies; the stores it never touches are absent. The same route with real commits
and a fake provider is in ``test_api_twilio.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlencode

import pytest
from aiohttp import web
from api_helpers import TWILIO_SID, TWILIO_TOKEN
from stubs import HttpClient, StubPipeline, http_client, stub_http_app
from support import SECRET

from gateway.edges.http import webhooks
from gateway.edges.http.auth import API, Admin, ApiDeps, Keys, Privacy, Sends
from gateway.edges.http.server import Register
from gateway.edges.http.webhooks import EMPTY_TWIML, SIGNATURE_HEADER, twilio_signature
from gateway.errors import BadInput, TemporaryFailure, UnknownSender
from gateway.security.tokens import TokenCodec, TokenKeys
from keywords.model import IntentKind, MatchKind

PUBLIC_URL = "https://gw.example.com"
ROUTE = "/v1/providers/twilio/sms"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def api_deps(auth_token: str | None) -> ApiDeps:
    """The API's dependencies with the provider configured; the stores are absent."""
    return ApiDeps(
        keys=cast(Keys, None),
        privacy=cast(Privacy, None),
        sends=cast(Sends, None),
        admin=cast(Admin, None),
        catalogs={},
        tokens=TokenCodec(TokenKeys.from_env({}, SECRET.encode())),
        public_base_url=PUBLIC_URL,
        link_ttl_seconds=86_400,
        confirm_ttl_seconds=3_600,
        default_region="US",
        wake_outbox=lambda: None,
        twilio_auth_token=auth_token,
        twilio_public_url=PUBLIC_URL,
        twilio_senders=("12345",),
    )


def _with_api(auth_token: str | None) -> Register:
    def register(app: web.Application) -> None:
        app[API] = api_deps(auth_token)

    return register


@pytest.fixture
def pipeline() -> StubPipeline:
    """A pipeline whose answer each test sets (a commit, unless told)."""
    return StubPipeline()


@pytest.fixture
async def client(pipeline: StubPipeline) -> AsyncIterator[HttpClient]:
    """A client of the webhook route on 127.0.0.1, with the auth token configured."""
    app = stub_http_app(pipeline, [_with_api(TWILIO_TOKEN), webhooks.register])
    async with http_client(app) as test_client:
        yield test_client


def _form(**fields: str) -> dict[str, str]:
    return {"MessageSid": "SM1", "AccountSid": TWILIO_SID, "From": "+14155550123",
            "To": "12345", "Body": "STOP", **fields}  # fmt: skip


async def _post(
    client: HttpClient, form: dict[str, str], signature: str | None = None
) -> tuple[int, dict[str, str], str]:
    sig = signature or twilio_signature(TWILIO_TOKEN, PUBLIC_URL + ROUTE, list(form.items()))
    headers = {**FORM, SIGNATURE_HEADER: sig}
    async with client.post(ROUTE, data=urlencode(form), headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_a_commit_is_200_with_empty_twiml(client: HttpClient, pipeline: StubPipeline) -> None:
    """200 with an empty ``<Response/>`` as text/xml once committed (replies leave through
    the outbox, never inline); the message is the form's, keyed by MessageSid, classified
    by the pipeline (no intent of the edge's), replies queued as usual."""
    status, headers, text = await _post(client, _form())
    assert (200, "text/xml; charset=utf-8", EMPTY_TWIML) == (status, headers["Content-Type"], text)
    [message] = pipeline.messages
    assert ("12345", "+14155550123", "STOP", "twilio:SM1", None, False) == (
        message.sender,
        message.contact,
        message.text,
        message.dedupe_key,
        message.intent,
        message.suppress_replies,
    )
    assert ("twilio", TWILIO_SID) == (message.evidence["source"], message.evidence["account"])


@pytest.mark.parametrize(
    ("opt_out_type", "kind"),
    [("STOP", IntentKind.OPT_OUT_ALL), ("START", IntentKind.OPT_IN), ("HELP", IntentKind.HELP)],
)
async def test_a_provider_handled_keyword_is_recorded_as_such_with_no_reply(
    client: HttpClient, pipeline: StubPipeline, opt_out_type: str, kind: IntentKind
) -> None:
    """Advanced Opt-Out: the provider acted and replied; the edge hands on exactly that
    intent and asks for no second reply (CTIA 5.1.3: one confirmation)."""
    status, _, text = await _post(client, _form(Body="stop please", OptOutType=opt_out_type))
    assert (200, EMPTY_TWIML) == (status, text)
    [message] = pipeline.messages
    assert message.intent is not None
    assert (kind, MatchKind.EXACT, True) == (
        message.intent.kind,
        message.intent.match,
        message.suppress_replies,
    )


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (TemporaryFailure("could not commit"), 503, "temporarily_unavailable"),
        (UnknownSender("not a configured sender"), 422, "unknown_sender"),
        (BadInput("message id too long", code="bad_message_id"), 422, "bad_message_id"),
    ],
    ids=["temporary", "unknown_sender", "bad_input"],
)
async def test_a_refusal_is_the_error_shape_and_never_twiml(
    client: HttpClient, pipeline: StubPipeline, answer: Exception, status: int, code: str
) -> None:
    """Nothing committed: 503 with ``Retry-After``; refused for good: 422. Neither is a
    200, so the provider does not take the message for delivered."""
    pipeline.answer = answer
    got, headers, text = await _post(client, _form())
    assert (status, code) == (got, json.loads(text)["error"]["code"])
    assert ("1" if status == 503 else None) == headers.get("Retry-After")


async def test_forged_tampered_or_unreadable_posts_never_reach_the_pipeline(
    client: HttpClient, pipeline: StubPipeline
) -> None:
    """A wrong or malformed signature, a field changed after signing: 401; a form without
    MessageSid: 400. The pipeline is never asked."""
    good = twilio_signature(TWILIO_TOKEN, PUBLIC_URL + ROUTE, list(_form().items()))
    answers = [
        (await _post(client, _form(), signature="A" * 27 + "="))[0],
        (await _post(client, _form(), signature="not base64"))[0],
        (await _post(client, _form(Body="START"), signature=good))[0],
        (await _post(client, {k: v for k, v in _form().items() if k != "MessageSid"}))[0],
    ]
    assert [401, 401, 401, 400] == answers
    assert [] == pipeline.messages


async def test_without_an_auth_token_every_post_is_401(pipeline: StubPipeline) -> None:
    """No GATEWAY_TWILIO_AUTH_TOKEN: refused like a wrong signature, whatever was sent."""
    app = stub_http_app(pipeline, [_with_api(None), webhooks.register])
    async with http_client(app) as client:
        status, _, text = await _post(client, _form())
    assert (401, "bad_signature") == (status, json.loads(text)["error"]["code"])
    assert [] == pipeline.messages
