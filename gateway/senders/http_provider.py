"""HTTP SMS provider (I/O layer): replies sent through a Twilio-compatible REST API.

``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with the form fields
``To``, ``From`` and ``Body`` and HTTP basic auth (account SID, auth token), as Twilio's
Messages resource takes them; the answer's ``sid`` is the provider reference. The base URL is
configurable so tests run against a local server and other Twilio-compatible providers work.
A 429 or 5xx, a timeout or a refused connection is temporary (the outbox retries with
backoff); any other 4xx is permanent: resending the same request cannot succeed (Twilio's
21610, "unsubscribed recipient", is one).

``RoutingSender`` picks, per sender (short code), the provider or the SMPP bind.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import aiohttp

from gateway.senders.base import OutboundSender, OutboxRow, SendError


class HttpSmsProvider:
    """One Twilio-compatible account."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        timeout_seconds: float,
    ) -> None:
        self._session = session
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        # RFC 7617 basic auth, built by hand: aiohttp.BasicAuth is deprecated in 3.14.
        basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {basic}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def available(self) -> bool:
        """Always: whether the provider is up is learnt by sending."""
        return True

    async def send(self, row: OutboxRow) -> str | None:
        """Send one SMS; return the provider's message sid.

        The answer is read as bytes and parsed leniently: a 2xx means the provider took the
        message, whatever its body holds (not UTF-8, not JSON), and sending it again would
        text the person twice; it is recorded as sent with no reference.
        """
        form = {"To": row.recipient, "From": row.sender, "Body": row.body}
        try:
            async with self._session.post(
                self._url, data=form, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"provider unreachable: {type(exc).__name__}", temporary=True) from exc
        answer = _json_object(raw)
        if status == 429 or status >= 500:
            raise SendError(f"provider answered {status}", temporary=True)
        if status >= 400 or status < 200:
            code = answer.get("code")
            code_text = str(code)[:20] if isinstance(code, int | str) else None
            raise SendError(f"provider refused: {status} code {code_text}", temporary=False)
        sid = answer.get("sid")
        return str(sid)[:128] if isinstance(sid, str | int) else None


def _json_object(raw: bytes) -> dict[str, object]:
    """The answer as a JSON object, or {} when it is not one (or not UTF-8)."""
    try:
        answer = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return answer if isinstance(answer, dict) else {}


class RoutingSender:
    """The SMS sender: the HTTP provider for the senders routed to it, else the fallback."""

    def __init__(
        self, routes: Mapping[str, OutboundSender], fallback: OutboundSender | None
    ) -> None:
        self._routes = dict(routes)
        self._fallback = fallback

    def available(self) -> bool:
        """Whether any route (or the fallback) could send now."""
        outs = [*self._routes.values(), *([self._fallback] if self._fallback else [])]
        return any(out.available() for out in outs)

    async def send(self, row: OutboxRow) -> str | None:
        """Send ``row`` by its sender's route."""
        sender = self._routes.get(row.sender, self._fallback)
        if sender is None:
            raise SendError(f"no SMS route for sender {row.sender}", temporary=True)
        return await sender.send(row)
