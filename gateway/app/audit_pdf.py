"""PDF of the audit report (I/O layer): the HTML printed by headless Chromium.

The report is one self-contained HTML page with print rules (gateway/audit/html.py), so the
browser that renders it on screen prints the same thing. Chromium is found as
``GATEWAY_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on the PATH (Debian's package
``chromium``); without it ``--format pdf`` is refused with ``pdf_unavailable`` and the HTML
can be printed from any browser instead. The page loads nothing (its Content-Security-Policy
says so), and runs under a fresh profile that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from gateway.errors import BadInput

_TIMEOUT = 120.0


class PdfUnavailable(BadInput):
    """No Chromium to print with (HTTP 422; the CLI exits 2)."""

    code = "pdf_unavailable"


def chromium() -> str | None:
    """The browser to print with, or None."""
    named = os.environ.get("GATEWAY_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def html_to_pdf(html: str) -> bytes:
    """``html`` as PDF (A4, no browser header or footer)."""
    browser = chromium()
    if browser is None:
        raise PdfUnavailable("no Chromium to print the report with: use format html")
    with tempfile.TemporaryDirectory(prefix="gateway-pdf-") as work:
        page, out = Path(work) / "report.html", Path(work) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        flags = [
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--no-pdf-header-footer",
            f"--user-data-dir={work}/profile",
            f"--print-to-pdf={out}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses root without it; the page is ours
        proc = await asyncio.create_subprocess_exec(
            browser,
            *flags,
            page.as_uri(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(proc.wait(), _TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PdfUnavailable("Chromium did not print the report in time") from None
        if proc.returncode != 0 or not out.exists():
            raise PdfUnavailable("Chromium could not print the report")
        return out.read_bytes()
