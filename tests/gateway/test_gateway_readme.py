"""The documents stay true: the README's consent table is the generated one, the commands
and files it names exist, and every invariant the code cites is in docs/DESIGN.md."""

from __future__ import annotations

import re

from support import ROOT

from keywords.consent import transition_table_markdown

README = (ROOT / "README.md").read_text(encoding="utf-8")
DESIGN = ROOT.joinpath("docs/DESIGN.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def test_readme_consent_table_is_generated_from_the_code() -> None:
    """The table between the markers equals keywords.consent.transition_table_markdown()."""
    block = re.search(
        r"<!-- consent-table:start -->\n(.*?)<!-- consent-table:end -->", README, re.S
    )
    assert block is not None
    assert transition_table_markdown().strip() == block.group(1).strip()


def test_quickstart_is_two_make_targets_that_exist() -> None:
    """`make run` and `make test` are the quickstart, and the Makefile defines both."""
    assert "make run" in README
    assert "make test" in README
    assert re.search(r"^run:", MAKEFILE, re.M)
    assert re.search(r"^test:", MAKEFILE, re.M)


def test_every_make_target_the_readme_names_exists() -> None:
    """Each `make X` in the README, in prose or in a shell block, is a Makefile target."""
    named = set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", README, re.M))
    assert {"run", "test", "smsc-sim", "run-smpp", "smsc-mo", "schema"} <= named
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M))
    assert set() == named - targets


def test_every_file_the_documents_link_to_exists() -> None:
    """Relative Markdown links in the README and docs/ point at files in the repository."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", path.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target):
                assert (path.parent / target).exists(), f"{path.name}: {target}"


def test_every_invariant_the_code_cites_is_numbered_in_the_design() -> None:
    """docs/DESIGN.md numbers its invariants 1..N without gaps, and every "invariant N" that
    code, migrations or tests cite is one of them."""
    section = DESIGN.split("## Invariants", 1)[1].split("\n## ", 1)[0]
    numbers = [int(n) for n in re.findall(r"^ ?(\d+)\. \*\*", section, re.M)]
    assert list(range(1, len(numbers) + 1)) == numbers
    cited: set[int] = set()
    for folder in ("gateway", "keywords", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".sql") or "node_modules" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            for group in re.findall(r"invariants? (\d+(?:(?:, | and )\d+)*)", text):
                cited |= {int(n) for n in re.findall(r"\d+", group)}
    assert cited, "no citations found: the pattern no longer matches the code"
    assert set() == cited - set(numbers)
