"""The client's address (HTTP edge): the peer, or what a trusted reverse proxy says it saw.

Evidence records the IP a consent change came from. Behind a reverse proxy the TCP peer is
the proxy, so the proxy passes the client's address in ``X-Forwarded-For`` (each proxy
appends the peer it saw). Anyone can send that header, so it is believed only from the
proxies named in ``[http] trusted_proxies``: the list is read from the right, through
trusted proxies only, and the first address that is not one of them is the client (the
leftmost entries were written by the client itself and prove nothing). Without trusted
proxies (the default) the header is ignored and the peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from aiohttp import web

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HEADER = "X-Forwarded-For"
_MAX_HOPS = 16  # entries read from the right; a longer chain is cut there
_MAX_ENTRY = 64  # characters; no address is longer, and nothing longer is parsed

TRUSTED: web.AppKey[tuple[IpNetwork, ...]] = web.AppKey("trusted_proxies")


def parse_networks(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``[http] trusted_proxies`` as networks; ValueError names an entry that is not one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or network") from exc
    return tuple(networks)


def _address(text: str) -> IpAddress | None:
    text = text.strip()
    if not text or len(text) > _MAX_ENTRY:
        return None
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return found


def _trusted(address: IpAddress, networks: tuple[IpNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(request: web.Request) -> str:
    """The client's IP as evidence records it ("" when the peer has none, e.g. a socket file)."""
    peer = _address(request.remote or "")
    if peer is None:
        return ""
    networks: tuple[IpNetwork, ...] = request.app.get(TRUSTED, ())
    if not networks or not _trusted(peer, networks):
        return str(peer)
    hops = ",".join(request.headers.getall(HEADER, ())).split(",")
    current = peer
    for entry in reversed(hops[-_MAX_HOPS:]):
        if not _trusted(current, networks):
            break
        hop = _address(entry)
        if hop is None:
            break  # not written by a proxy of ours: keep the last address one of them saw
        current = hop
    return str(current)


def register_trusted(networks: tuple[IpNetwork, ...]) -> Callable[[web.Application], None]:
    """An HTTP module (``build_app``) that makes ``networks`` the trusted proxies."""

    def register(app: web.Application) -> None:
        app[TRUSTED] = networks

    return register
