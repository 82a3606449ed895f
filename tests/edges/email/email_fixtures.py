"""Email edge fixtures (a pytest plugin): DKIM key, TLS files, relay sink, mail gateway, db."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from mailtest import DNS, DkimKey, RelaySink, mail_settings, running
from support import PG_URL

from gateway.app import Gateway
from gateway.settings import Settings


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    """A 2048-bit RSA key from the openssl CLI."""
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                   capture_output=True)  # fmt: skip
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout  # fmt: skip
    return DkimKey(key.read_bytes(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


@pytest.fixture(scope="session", autouse=True)
def test_dns(dkim_key: DkimKey) -> Iterator[None]:
    """The test zone on a real DNS server: SPF, DKIM keys and DMARC policies of the senders
    the email tests play (the one test key signs for every domain)."""
    for domain in ("example.org", "fbl.example.net", "lists.acme-health.example"):
        DNS.add_txt(domain, b"v=spf1 ip4:127.0.0.1 -all")  # every test client is 127.0.0.1
    DNS.add_txt("forger.example", b"v=spf1 -all")
    for domain in ("example.org", "fbl.example.net", "acme-health.example"):
        DNS.add_txt(f"sel1._domainkey.{domain}", dkim_key.txt)
        DNS.add_txt(f"_dmarc.{domain}", b"v=DMARC1; p=reject")
    DNS.start()
    yield
    DNS.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for STARTTLS."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def relay() -> AsyncIterator[RelaySink]:
    """A running relay sink."""
    sink = RelaySink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
async def mail_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A running gateway with the SMTP server and one-click routes (no relay)."""
    async with running(mail_settings(settings)) as gw:
        yield gw


@pytest.fixture
async def mdb(settings: Settings, mail_gateway: Gateway) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the mail gateway's schema."""
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    yield conn
    await conn.close()
