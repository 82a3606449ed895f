"""The README stays true: its consent table is the generated one, its quickstart commands exist."""

from __future__ import annotations

import re

from support import ROOT

from keywords.consent import transition_table_markdown

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_consent_table_is_generated_from_the_code() -> None:
    """The table between the markers equals keywords.consent.transition_table_markdown()."""
    block = re.search(
        r"<!-- consent-table:start -->\n(.*?)<!-- consent-table:end -->", README, re.S
    )
    assert block is not None
    assert transition_table_markdown().strip() == block.group(1).strip()


def test_quickstart_is_two_make_targets_that_exist() -> None:
    """`make run` and `make test` are the quickstart, and the Makefile defines both."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "make run" in README
    assert "make test" in README
    assert re.search(r"^run:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
