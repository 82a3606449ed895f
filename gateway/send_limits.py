"""Send-through limits (I/O layer helper, no I/O): what a ``POST /v1/send`` body may be.

An SMS body is counted in the parts it is billed and sent as (GSM 03.38 or UCS-2,
``keywords/segments.py``) and refused past ``[api] max_send_segments`` (default 10); an email
body is refused past ``[api] max_send_email_chars``. Both are ``body_too_long``: a client
that retries the same body gets the same answer. A body may hold tabs and line breaks, no
other control character (C0, DEL, C1) and none of the bidi embeddings, overrides and
isolates (U+202A-U+202E, U+2066-U+2069), which reverse the text after them until a
terminator that need not come (CVE-2021-42574); the marks U+200E, U+200F and U+061C, which
Arabic and Hebrew text uses, are kept. Those are ``invalid_body``. Nothing is queued.
"""

from __future__ import annotations

import re

from gateway.errors import BadInput
from keywords.model import Channel
from keywords.segments import segments

_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class BodyTooLong(BadInput):
    """The body is longer than the gateway sends (HTTP 422)."""

    code = "body_too_long"


class InvalidBody(BadInput):
    """The body holds a control character (HTTP 422)."""

    code = "invalid_body"


def check_body(channel: Channel, body: str, *, max_segments: int, max_email_chars: int) -> None:
    """Raise ``BodyTooLong`` or ``InvalidBody`` unless ``body`` may be sent on ``channel``."""
    found = _REFUSED.search(body)
    if found is not None:
        raise InvalidBody(
            f"the body holds U+{ord(found.group()):04X}: only tabs and line breaks among"
            " control characters, and no bidi embedding, override or isolate"
        )
    if channel is Channel.SMS:
        # Every character takes a septet at least and a part holds 153 (160 alone), so a
        # longer body is over the cap whatever its alphabet: refused without counting 64 KB.
        if len(body) > max(160, 153 * max_segments):
            raise BodyTooLong(f"the SMS body is over {max_segments} segments")
        parts = segments(body)
        if parts > max_segments:
            raise BodyTooLong(
                f"the SMS body is {parts} segments; at most {max_segments} are sent"
                " (api.max_send_segments)"
            )
    elif len(body) > max_email_chars:
        raise BodyTooLong(
            f"the email body is {len(body)} characters; at most {max_email_chars}"
            " (api.max_send_email_chars)"
        )
