"""DNS for inbound mail authentication (I/O layer): dnspython with our servers, time and cache.

SPF, DKIM and DMARC all read DNS (RFC 7208 section 4.4, RFC 6376 section 3.6.2, RFC 7489
section 6.6.3). Every lookup goes through one ``MailResolver``: the name servers of ``[smtp]
dns_servers`` (else the system's ``/etc/resolv.conf``), a lifetime of ``dns_timeout_seconds``
per lookup, and an LRU cache that honours each answer's TTL, so a burst of mail from one
domain costs one lookup per record. Lookups block: callers run them in a thread.

The answers come in the shapes the libraries expect: ``dkim_txt`` is dkimpy's ``dnsfunc``
and ``spf_lookup`` is pyspf's ``DNSLookup`` (pyspf's own test suite replaces that function the
same way; ``gateway/edges/smtp/mailauth.py`` routes it here).
"""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.resolver

_CACHE_ENTRIES = 10_000


class DnsTemporaryError(Exception):
    """No answer could be had now (timeout, SERVFAIL, no server): a ``temperror``."""


class MailResolver:
    """Blocking DNS lookups for SPF, DKIM and DMARC, bounded in time and cached."""

    def __init__(self, servers: tuple[str, ...] = (), *, port: int = 53, timeout: float = 5.0):
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = list(servers)
            resolver.port = port
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                # No resolv.conf (a bare container): every lookup is a temperror, which
                # changes nothing by itself; the operator sets [smtp] dns_servers.
                resolver = dns.resolver.Resolver(configure=False)
        resolver.timeout = timeout
        resolver.lifetime = timeout
        resolver.cache = dns.resolver.LRUCache(_CACHE_ENTRIES)
        self._resolver = resolver
        self.timeout = timeout

    def answer(self, name: str, qtype: str) -> dns.resolver.Answer | None:
        """The answer for ``name``/``qtype``; None when the name or the type does not exist."""
        try:
            return self._resolver.resolve(name, qtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            # A timeout, SERVFAIL from every server, no server, or a name or answer that does
            # not parse: RFC 7208 section 5 and RFC 7489 section 6.6.3 call it a temperror.
            raise DnsTemporaryError(f"DNS {qtype} lookup failed: {type(exc).__name__}") from exc

    def txt(self, name: str) -> list[bytes]:
        """Every TXT record at ``name``, each with its strings joined (RFC 7208 section 3.3)."""
        found = self.answer(name, "TXT")
        if found is None:
            return []
        return [b"".join(rdata.strings) for rdata in found]

    def dkim_txt(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's ``dnsfunc``: the key record at ``selector._domainkey.domain.``, or b''."""
        records = self.txt(name.decode("ascii", "replace"))
        # RFC 6376 section 3.6.2.2: several records at the name give undefined results; take
        # the first that is a DKIM key (dkimpy reads one record).
        return next((r for r in records if b"p=" in r), records[0] if records else b"")

    def spf_lookup(
        self, name: str, qtype: str, strict: object = True, timeout: float = 30.0
    ) -> list[tuple[tuple[str, str], Any]]:
        """pyspf's ``DNSLookup``: ``[((name, type), value), ...]`` as its dnspython driver gives.

        pyspf raises its ``TempError`` for what we call temporary; the caller maps ours to it.
        """
        found = self.answer(name, qtype)
        if found is None:
            return []
        out: list[tuple[tuple[str, str], Any]] = []
        for rdata in found:
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                out.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), rdata.strings))
        return out
