"""The docs stand alone: every link resolves, and no page leans on the 2014 document that is not here."""
import re

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    for target, _anchor in LINK.findall(page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: link to {target}, which does not exist"


# history.md is the one place for the 2014 scripts; configuration.md is generated from lapinfra/config.py,
# performance.md is another engineer's
OWN_WORDS = [p for p in PAGES if p.name not in ("history.md", "configuration.md", "performance.md")]


@pytest.mark.parametrize("page", OWN_WORDS, ids=[p.name for p in OWN_WORDS])
def test_no_page_but_history_needs_the_seed_document(page):
    text = page.read_text()
    assert not re.search(r"\bthe seed\b|\bseed's\b|seed machine", text, re.IGNORECASE), \
        f"{page.relative_to(ROOT)} refers to the 2014 document: explain it here, or move it to docs/history.md"


def test_task_help_texts_do_not_refer_to_the_seed():
    for module in sorted((ROOT / "tasks").glob("*.py")):
        assert not re.search(r"\bthe seed\b|\bseed's\b", module.read_text(), re.IGNORECASE), module.name


def test_readme_links_the_reference_pages_and_keeps_its_quick_start():
    readme = (ROOT / "README.md").read_text()
    for page in ("docs/configuration.md", "docs/troubleshooting.md", "docs/environments.md", "docs/undo.md"):
        assert f"]({page})" in readme
    quick = readme.split("## Quick start", 1)[1].split("\n\n", 2)[1]
    assert [line.split("#")[0].strip() for line in quick.splitlines()] == ["./lap up", "./lap pytest"]
    assert "## Prerequisites" in readme and "LAPINFRA_ENV" in readme and "--print-completion-script" in readme
