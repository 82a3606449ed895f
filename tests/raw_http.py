"""Raw HTTP for hostile-input tests: exact bytes on the wire, the answer read by http.client.

aiohttp's and every other client refuse to send what these tests send (bytes that are not
UTF-8 in a header, a broken request line), so requests are written to a plain socket and the
response is parsed by the standard library's ``http.client``, which shares no code with the
server.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response as the client read it."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        """One header's value, or ``""``."""
        return self.headers.get(name, "")


def exchange(port: int, request: bytes, *, timeout: float = 10.0) -> RawResponse | None:
    """Send ``request`` as is to 127.0.0.1:``port``; the first response, or None when the
    server closed the connection without one."""
    method = request.split(b" ", 1)[0].decode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer and close before it took everything: read the answer then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()  # skips a "100 Continue" interim answer
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        except http.client.IncompleteRead as exc:
            body = exc.partial
        return RawResponse(response.status, response.headers, body)


def request_bytes(
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    content_length: bytes | None = None,
) -> bytes:
    """An HTTP/1.1 request with exactly these header bytes and, unless one is given among
    them or ``content_length`` overrides it, a correct Content-Length."""
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if content_length is not None:
        lines.append(b"Content-Length: " + content_length)
    elif not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
