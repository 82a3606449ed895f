"""The one-click routes' wire mapping, in process: RFC 8058 answers for each pipeline answer.

The routes are the gateway's (``registrar`` of gateway/edges/http/unsubscribe.py inside
``build_app``), with the links a mail gateway would have, served by aiohttp's
``TestServer`` on 127.0.0.1 in front of a ``StubPipeline``: no database, no gateway. The
end-to-end answers, with real commits, are in ``test_email_oneclick.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from mailtest import DOMAIN, NEWS, SUBSCRIBER, offline_links
from stubs import KEY, HttpClient, StubPipeline, duplicate, http_client, stub_http_app, unchanged

from gateway.edges.http.unsubscribe import UnsubscribeDeps, registrar
from gateway.email.links import ONE_CLICK_VALUE, PURPOSE, Target, UnsubscribeLinks
from gateway.errors import BadInput, TemporaryFailure
from gateway.messages import Method, Outcome
from gateway.security.signing import HEADER, sign
from gateway.security.tokens import TokenCodec
from keywords.model import Channel, IntentKind, MatchKind

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}


class Revoked:
    """Token revocations held in memory (``EmailMarks`` keeps them in PostgreSQL)."""

    def __init__(self) -> None:
        self.fingerprints: set[str] = set()

    async def is_revoked(self, fingerprint: str) -> bool:
        """True for a revoked token's fingerprint."""
        return fingerprint in self.fingerprints


@pytest.fixture
def links() -> UnsubscribeLinks:
    """The mail gateway's links, without the gateway."""
    return offline_links()


@pytest.fixture
def revoked() -> Revoked:
    """No token revoked yet."""
    return Revoked()


@pytest.fixture
def pipeline() -> StubPipeline:
    """A pipeline whose answer each test sets (a commit that opted out, unless told)."""
    return StubPipeline()


@pytest.fixture
async def client(
    links: UnsubscribeLinks, revoked: Revoked, pipeline: StubPipeline
) -> AsyncIterator[HttpClient]:
    """A client of the one-click routes on 127.0.0.1."""
    app = stub_http_app(pipeline, [registrar(UnsubscribeDeps(links, revoked))])
    async with http_client(app) as test_client:
        yield test_client


async def _click(client: HttpClient, token: str) -> tuple[int, dict[str, str], str]:
    """The RFC 8058 section 3.1 POST, as Gmail sends it."""
    async with client.post(f"/u/{token}", data=ONE_CLICK_VALUE.encode(), headers=FORM) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def _page_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers.get(name, "") for name in PAGE_HEADERS}


async def test_a_click_that_unsubscribes_is_200_with_the_page_after_the_commit(
    client: HttpClient, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """200 (never a redirect: RFC 8058 section 3.2), an HTML page without script whose
    headers keep the token to this site; the pipeline gets an explicit opt-out of the
    token's list, never text to classify."""
    token = links.token(Target(NEWS, SUBSCRIBER))
    status, headers, text = await _click(client, token)
    assert (200, PAGE_HEADERS) == (status, _page_headers(headers))
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "Location" not in headers
    assert "You are now unsubscribed" in text
    assert "<script" not in text
    [message] = pipeline.messages
    assert message.intent is not None
    assert (Channel.EMAIL, NEWS, links.target(token).address, Method.ONE_CLICK) == (
        message.channel,
        message.sender,
        message.contact,
        message.method,
    )
    assert (IntentKind.OPT_OUT_ALL, MatchKind.EXACT, None, "one-click") == (
        message.intent.kind,
        message.intent.match,
        message.intent.program,
        message.intent.keyword,
    )
    assert message.dedupe_key.startswith(f"oneclick:{TokenCodec.fingerprint(token)}:")
    assert ("rfc8058", "present", "127.0.0.1") == (
        message.evidence["source"],
        message.evidence["one_click_field"],
        message.evidence["ip"],
    )


async def test_a_program_token_leaves_that_program_only(
    client: HttpClient, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """A token that names a program is an opt-out of that program."""
    token = links.token(Target(NEWS, SUBSCRIBER, "newsletter"))
    assert 200 == (await _click(client, token))[0]
    [message] = pipeline.messages
    assert message.intent is not None
    assert (IntentKind.OPT_OUT, "newsletter") == (message.intent.kind, message.intent.program)


@pytest.mark.parametrize("outcome", [unchanged(), duplicate()], ids=["unchanged", "duplicate"])
async def test_a_click_that_changes_nothing_is_200_saying_so(
    client: HttpClient, links: UnsubscribeLinks, pipeline: StubPipeline, outcome: Outcome
) -> None:
    """Already out (or a redelivery): still 200, and the page says nothing was changed."""
    pipeline.answer = outcome
    status, headers, text = await _click(client, links.token(Target(NEWS, SUBSCRIBER)))
    assert (200, PAGE_HEADERS) == (status, _page_headers(headers))
    assert "You were already unsubscribed" in text


async def test_nothing_committed_is_503_with_retry_after(
    client: HttpClient, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """``TemporaryFailure``: 503 and ``Retry-After``, so the mailbox provider posts again."""
    pipeline.answer = TemporaryFailure("could not commit")
    status, headers, text = await _click(client, links.token(Target(NEWS, SUBSCRIBER)))
    assert (503, "1") == (status, headers["Retry-After"])
    assert {"error": {"code": "temporarily_unavailable", "message": "could not commit"}} == (
        json.loads(text)
    )


async def test_a_refusal_for_good_is_422(
    client: HttpClient, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """A ``BadInput`` from the pipeline: 422 in the error shape, no Retry-After."""
    pipeline.answer = BadInput("the sender has no such program", code="unknown_program")
    status, headers, text = await _click(client, links.token(Target(NEWS, SUBSCRIBER)))
    assert (422, "unknown_program") == (status, json.loads(text)["error"]["code"])
    assert "Retry-After" not in headers


async def test_tokens_we_will_not_act_on_get_their_4xx_page_and_reach_no_pipeline(
    client: HttpClient, links: UnsubscribeLinks, revoked: Revoked, pipeline: StubPipeline
) -> None:
    """Forged and revoked 403, expired 410, malformed 400, a list no longer configured 404:
    each a page with the same headers, and nothing handed on (docs/DESIGN.md, invariant 7)."""
    good = links.token(Target(NEWS, SUBSCRIBER))
    payload = links.codec.verify(good, PURPOSE)
    expired = links.codec.issue(payload, PURPOSE, ttl_seconds=86_400, now=time.time() - 2 * 86_400)
    gone = links.codec.issue(b"\x00\x00\x00\x00\x00ann@example.org", PURPOSE, ttl_seconds=3_600)
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    withdrawn = links.token(Target(NEWS, "bob@example.org"))
    revoked.fingerprints.add(TokenCodec.fingerprint(withdrawn))
    answers = {}
    for name, token in [("forged", forged), ("revoked", withdrawn), ("expired", expired),
                        ("malformed", "k0.!!"), ("gone", gone)]:  # fmt: skip
        status, headers, text = await _click(client, token)
        assert PAGE_HEADERS == _page_headers(headers), name
        assert "Link not valid" in text
        answers[name] = status
    assert {"forged": 403, "revoked": 403, "expired": 410, "malformed": 400, "gone": 404} == (
        answers
    )
    assert [] == pipeline.messages


async def test_the_get_page_asks_and_changes_nothing(
    client: HttpClient, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """GET (a person, or a link scanner): 200 with a form that POSTs; nothing handed on."""
    async with client.get(f"/u/{links.token(Target(NEWS, SUBSCRIBER))}") as resp:
        assert (200, PAGE_HEADERS) == (resp.status, _page_headers(dict(resp.headers)))
        text = await resp.text()
    assert '<form method="post">' in text
    assert "List-Unsubscribe" in text
    assert [] == pipeline.messages


async def test_the_header_service_answers_the_rfc8058_pair(
    client: HttpClient, links: UnsubscribeLinks
) -> None:
    """Signed JSON in, the ``List-Unsubscribe`` (HTTPS first, then mailto) and
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` values out; unsigned, 401."""
    body = json.dumps({"list": NEWS, "to": SUBSCRIBER}).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    async with client.post("/v1/email/headers", data=body, headers=headers) as resp:
        assert (200, "application/json; charset=utf-8") == (
            resp.status,
            resp.headers["Content-Type"],
        )
        answer = await resp.json()
    assert ONE_CLICK_VALUE == answer["headers"]["List-Unsubscribe-Post"]
    https, mailto = answer["headers"]["List-Unsubscribe"].split(", ")
    token = answer["url"].rpartition("/u/")[2]
    assert (f"<{answer['url']}>", answer["url"]) == (https, links.url(token))
    assert f"<mailto:unsubscribe+{token}@{DOMAIN}?subject=unsubscribe>" == mailto
    target = links.target(token)
    assert (NEWS, None) == (target.list_id, target.program)
    async with client.post("/v1/email/headers", data=body) as resp:
        assert (401, "bad_signature") == (resp.status, (await resp.json())["error"]["code"])
