"""Inbound mail authentication (I/O layer): SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489).

Which mail pays for it is the handler's choice (``gateway/edges/smtp/handler.py``): replies
whose consent change rests on the author's address, and reports that are not tied to our
mail. Mail to ``unsubscribe+TOKEN@`` is not authenticated: the token decides, not the author.

The libraries: dkimpy verifies every DKIM-Signature (up to ``_MAX_SIGNATURES``), pyspf
evaluates SPF for the connecting IP, and ``dmarc`` (pydmarc) parses the DMARC record and
checks identifier alignment against the public suffix list (publicsuffix2). All three read
DNS through one ``MailResolver`` (our servers, our timeout, one cache). The work blocks, so
it runs on a small thread pool of its own, bounded by ``[smtp] auth_timeout_seconds``: past
it the results say ``temperror``, which by itself never changes consent.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints
import dkim.util  # type: ignore[import-untyped]
import dmarc  # type: ignore[import-untyped]  # pydmarc ships no type hints
import publicsuffix2  # type: ignore[import-untyped]
import spf  # type: ignore[import-untyped]  # pyspf ships no type hints
from cryptography.hazmat.primitives import serialization

from gateway.edges.smtp.resolver import DnsTemporaryError, MailResolver

log = logging.getLogger(__name__)

_MAX_SIGNATURES = 5  # more DKIM-Signatures than this are not verified (each costs a lookup)
_WORKERS = 4  # authentications at once; more wait their turn inside the time bound
_DMARC_RECORD = re.compile(rb"v\s*=\s*DMARC1\s*(;|$)")  # RFC 7489 section 6.6.3 step 2

# The resolver of the authentication running in this thread (pyspf looks DNS up through one
# module-level function, so it is routed here rather than to dnspython's default resolver).
_RESOLVER: contextvars.ContextVar[MailResolver | None] = contextvars.ContextVar(
    "mail_resolver", default=None
)


def _spf_dns(name: str, qtype: str, strict: object = True, timeout: float = 30.0) -> list[Any]:
    resolver = _RESOLVER.get()
    if resolver is None:
        raise spf.TempError("DNS: no resolver configured for this lookup")
    try:
        return resolver.spf_lookup(name, qtype, strict, timeout)
    except DnsTemporaryError as exc:
        raise spf.TempError(f"DNS: {exc}") from exc


spf.DNSLookup = _spf_dns


@functools.cache
def _public_suffixes() -> Any:
    """The public suffix list publicsuffix2 ships, read once (about 0.1 s)."""
    return publicsuffix2.PublicSuffixList()


@dataclass(frozen=True, slots=True)
class Signature:
    """One DKIM-Signature and what its verification gave (RFC 8601 section 2.7.1 values)."""

    domain: str  # d=
    selector: str  # s=
    result: str  # pass, fail, temperror, permerror


@dataclass(frozen=True, slots=True)
class AuthResults:
    """SPF, DKIM and DMARC results of one inbound mail, with the domains they are about."""

    spf: str  # pass, fail, softfail, neutral, none, temperror, permerror
    spf_domain: str  # the MAIL FROM domain, or the HELO name for a null sender
    dkim: tuple[Signature, ...]
    dmarc: str  # pass, fail, none, temperror, permerror
    dmarc_domain: str  # the RFC5322.From domain DMARC evaluated
    dmarc_policy: str  # the disposition the domain asks for: none, quarantine, reject

    @classmethod
    def unavailable(cls, spf_domain: str) -> AuthResults:
        """What is recorded when authentication could not finish in time."""
        return cls("temperror", spf_domain, (), "temperror", "", "")

    def dkim_pass(self, domain: str) -> bool:
        """True if a signature of ``domain`` (or one of its subdomains) verified."""
        return any(s.result == "pass" and _within(s.domain, domain) for s in self.dkim)

    def spf_pass(self, domain: str) -> bool:
        """True if SPF passed for an envelope domain that is ``domain`` or below it."""
        return self.spf == "pass" and _within(self.spf_domain, domain)

    def evidence(self) -> dict[str, str]:
        """The results as evidence fields (strings, as the ledger's evidence holds them)."""
        dkim_text = ", ".join(f"{s.result} d={s.domain} s={s.selector}" for s in self.dkim)
        return {
            "spf": self.spf,
            "spf_domain": self.spf_domain,
            "dkim": dkim_text or "none",
            "dmarc": self.dmarc,
            "dmarc_domain": self.dmarc_domain,
            "dmarc_policy": self.dmarc_policy,
        }


def _within(name: str, domain: str) -> bool:
    name, domain = name.lower().rstrip("."), domain.lower().rstrip(".")
    return bool(name) and (name == domain or name.endswith("." + domain))


def _sender_domain(mail_from: str, helo: str) -> str:
    # RFC 7208 section 2.4: with a null reverse-path the HELO identity is checked instead.
    address = mail_from.strip().strip("<>")
    return address.rpartition("@")[2].lower() if "@" in address else helo.lower()


class MailAuthenticator:
    """Authenticates inbound mail off the event loop, within a time bound."""

    def __init__(self, resolver: MailResolver, *, timeout: float) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="mail-auth")

    def close(self) -> None:
        """Stop the threads (a check still running finishes on its own; nobody waits)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def authenticate(self, raw: bytes, ip: str, mail_from: str, helo: str) -> AuthResults:
        """SPF, DKIM and DMARC results; ``temperror`` throughout if the bound runs out."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                return await loop.run_in_executor(self._pool, self.check, raw, ip, mail_from, helo)
        except TimeoutError:
            log.info("mail authentication timed out", extra={"timeout": self._timeout})
            return AuthResults.unavailable(_sender_domain(mail_from, helo))

    def check(self, raw: bytes, ip: str, mail_from: str, helo: str) -> AuthResults:
        """The blocking work: SPF, then every DKIM signature, then DMARC over both."""
        token = _RESOLVER.set(self._resolver)
        try:
            spf_result, spf_domain = self._spf(ip, mail_from, helo)
            signatures = tuple(self._dkim(raw))
            dmarc_result, from_domain, policy = self._dmarc(raw, spf_result, spf_domain, signatures)
        finally:
            _RESOLVER.reset(token)
        return AuthResults(spf_result, spf_domain, signatures, dmarc_result, from_domain, policy)

    def _spf(self, ip: str, mail_from: str, helo: str) -> tuple[str, str]:
        domain = _sender_domain(mail_from, helo)
        if not ip or not domain:
            return "none", domain
        sender = mail_from.strip().strip("<>")
        try:
            # querytime bounds the whole evaluation (RFC 7208 section 4.6.4 suggests 20 s).
            query = spf.query(
                i=ip, s=sender, h=helo or domain, timeout=self._resolver.timeout,
                querytime=self._timeout,
            )  # fmt: skip
            result = str(query.check()[0])
        except Exception:
            # pyspf turns DNS and record errors into results; anything else it raises on odd
            # input is recorded as an error of ours, never a pass.
            log.debug("SPF evaluation failed", exc_info=True)
            result = "permerror"
        return result, domain

    def _dkim(self, raw: bytes) -> Iterator[Signature]:
        try:
            headers, _ = dkim.rfc822_parse(raw)
        except Exception:  # noqa: BLE001 - dkimpy can raise IndexError on hostile headers
            return
        values = [v for k, v in headers if k.lower() == b"dkim-signature"][:_MAX_SIGNATURES]
        if not values:
            return
        verifier = dkim.DKIM(raw, timeout=max(1, int(self._resolver.timeout)))
        for idx, value in enumerate(values):
            try:
                tags = dkim.util.parse_tag_value(re.sub(rb"\r?\n[ \t]", b" ", value))
            except dkim.util.InvalidTagValueList:
                tags = {}
            domain = bytes(tags.get(b"d", b"")).decode("ascii", "replace").strip().lower()
            selector = bytes(tags.get(b"s", b"")).decode("ascii", "replace").strip()
            try:
                ok = verifier.verify(idx=idx, dnsfunc=self._resolver.dkim_txt)
                result = "pass" if ok else "fail"
            except DnsTemporaryError:
                result = "temperror"
            except dkim.ValidationError:
                result = "fail"  # body hash or signature mismatch (RFC 6376 section 6.1.3)
            except Exception:  # noqa: BLE001 - dkimpy fails in more ways than it names: permerror
                result = "permerror"  # bad tags, no usable key, a key too small
            yield Signature(domain, selector, result)

    def _dmarc(
        self, raw: bytes, spf_result: str, spf_domain: str, signatures: tuple[Signature, ...]
    ) -> tuple[str, str, str]:
        """(result, From domain, policy). RFC 7489 section 6.6: one From domain, its record or
        its Organizational Domain's, then identifier alignment of the SPF and DKIM passes."""
        try:
            headers, _ = dkim.rfc822_parse(raw)
        except Exception:  # noqa: BLE001 - as in _dkim: any parse failure is a permerror
            return "permerror", "", ""
        values = [v.decode("utf-8", "replace") for k, v in headers if k.lower() == b"from"]
        domains = {
            a.rpartition("@")[2].lower().rstrip(".") for _, a in getaddresses(values) if "@" in a
        }
        if len(domains) != 1:
            # Section 6.6.1: a mail without exactly one author domain cannot be evaluated.
            return ("permerror" if domains else "none"), "", ""
        from_domain = domains.pop()
        try:
            record, org_domain = self._dmarc_record(from_domain)
        except DnsTemporaryError:
            return "temperror", from_domain, ""
        if record is None:
            return "none", from_domain, ""
        try:
            policy = dmarc.DMARCPolicy(
                record=record, domain=from_domain, org_domain=org_domain,
                publicsuffix=_public_suffixes(), strict=False,
            )  # fmt: skip
        except dmarc.Error:
            return "permerror", from_domain, ""
        results: list[Any] = [
            dmarc.DKIM(s.domain, dmarc.DKIMResult(s.result), s.selector)
            for s in signatures
            if s.domain
        ]
        if spf_domain:
            results.append(dmarc.SPF(spf_domain, dmarc.SPFResult(spf_result)))
        try:
            policy.verify(auth_results=results)
            outcome = "pass"
        except dmarc.PolicyError:
            outcome = "fail"
        except ValueError:
            outcome = "permerror"
        disposition = policy.policy.sp if org_domain else policy.policy.p
        if disposition is dmarc.DMARCDisposition.UNSPECIFIED:
            disposition = policy.policy.p
        return outcome, from_domain, str(disposition.value or "none")

    def _dmarc_record(self, domain: str) -> tuple[str | None, str | None]:
        """The one DMARC record of ``domain``, else of its Organizational Domain (6.6.3)."""
        record = self._one_record(domain)
        if record is not None:
            return record, None
        org = str(_public_suffixes().get_sld(domain) or "")
        if org and org != domain:
            record = self._one_record(org)
            if record is not None:
                return record, org
        return None, None

    def _one_record(self, domain: str) -> str | None:
        records = [r for r in self._resolver.txt(f"_dmarc.{domain}") if _DMARC_RECORD.match(r)]
        # Several records are as good as none (section 6.6.3 step 3).
        return records[0].decode("utf-8", "replace") if len(records) == 1 else None


@dataclass(frozen=True, slots=True)
class OwnKey:
    """Our DKIM key's public half, so our own signatures verify without asking DNS."""

    domain: str
    selector: str
    record: bytes  # the TXT record we publish at selector._domainkey.domain

    @classmethod
    def from_private_pem(cls, pem: bytes, domain: str, selector: str) -> OwnKey:
        """Derive the public record from the private key (RFC 6376 section 3.6.1)."""
        public = serialization.load_pem_private_key(pem, password=None).public_key()
        # SubjectPublicKeyInfo in DER, base64: the p= value of RFC 6376 section 3.6.1.
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(domain.lower(), selector, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))

    def _dnsfunc(self, name: bytes, timeout: int = 5) -> bytes:
        wanted = f"{self.selector}._domainkey.{self.domain}.".encode().lower()
        return self.record if name.lower() == wanted else b""

    def signed_by_us(self, raw: bytes) -> bool:
        """True if ``raw`` carries a valid signature of ours covering From and To, and holds
        one From and one To: a second, unsigned To added above ours would otherwise be read
        as the recipient while the signature still verified (RFC 6376 section 8.15)."""
        try:
            headers, _ = dkim.rfc822_parse(raw)
        except Exception:  # noqa: BLE001 - as in _dkim: mail we cannot parse is not ours
            return False
        names = [k.lower() for k, _ in headers]
        if names.count(b"from") != 1 or names.count(b"to") != 1:
            return False
        verifier = dkim.DKIM(raw)
        for idx in range(min(names.count(b"dkim-signature"), _MAX_SIGNATURES)):
            try:
                ok = verifier.verify(idx=idx, dnsfunc=self._dnsfunc)
            except Exception:  # noqa: BLE001 - someone else's signature, or a broken one: not ours
                ok = False
            # dkimpy sets these only once a signature parsed: a broken one leaves them unset.
            signed = set(getattr(verifier, "include_headers", None) or ())
            ours = bytes(getattr(verifier, "domain", None) or b"").lower() == self.domain.encode()
            if ok and ours and {b"from", b"to"} <= signed:
                return True
        return False
