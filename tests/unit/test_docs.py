"""The README is what a newcomer reads first and stays short; everything else
lives in the documentation site (mkdocs.yml, pages in docs/). Every page is in
the site's navigation, and no link of the README or of a page leads nowhere.
(`make docs` builds the site with --strict; these checks need no build.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: A Markdown link or image, ``[text](target)`` or ``![alt](target "title")``.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)


def nav_pages(entries: object) -> Iterator[str]:
    """Every page a (possibly nested) mkdocs nav names."""
    if isinstance(entries, str):
        yield entries
    elif isinstance(entries, list):
        for entry in entries:
            yield from nav_pages(entry)
    elif isinstance(entries, dict):
        for value in entries.values():
            yield from nav_pages(value)


def navigation() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    return [page for page in nav_pages(config["nav"]) if not re.match(r"^[a-z]+://", page)]


def relative_links(markdown: Path) -> list[str]:
    """The targets of the links of a Markdown file that point into the repository."""
    text = FENCE.sub("", markdown.read_text())
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            continue  # another site, an e-mail address, an anchor on the same page
        targets.append(target.split("#", 1)[0])
    return targets


def test_the_readme_is_under_250_lines():
    lines = README.read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines: move the details to a page in docs/"


def test_every_page_in_the_navigation_exists():
    pages = navigation()
    assert pages, "mkdocs.yml lists no page"
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml's nav names pages that do not exist: {missing}"
    assert len(pages) == len(set(pages)), "a page is listed twice in the nav"


def test_every_page_under_docs_is_in_the_navigation():
    listed = set(navigation())
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    assert "index.md" in pages
    left_out = [page for page in pages if page not in listed]
    assert not left_out, f"pages missing from mkdocs.yml's nav: {left_out}"


def test_every_relative_link_of_the_readme_points_to_an_existing_file():
    targets = relative_links(README)
    assert targets, "the README links no page"
    broken = [target for target in targets if not (ROOT / target).exists()]
    assert not broken, f"README.md links to what does not exist: {broken}"


def test_the_readme_links_every_page_of_the_navigation():
    linked = {(ROOT / target).resolve() for target in relative_links(README)}
    unlinked = [page for page in navigation() if (DOCS / page).resolve() not in linked]
    assert not unlinked, f"README.md's reading list leaves out: {unlinked}"


def test_every_relative_link_of_a_page_stays_inside_docs_and_points_to_an_existing_file():
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in relative_links(page):
            if not target:
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(DOCS.resolve()) or not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, f"links the documentation site cannot follow: {broken}"
