"""The README and docs/: every relative link and anchor resolves, and the README stays a map."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def links(document):
    """The link targets of a Markdown file, code blocks left out."""
    text = FENCE.sub("", document.read_text())
    return LINK.findall(text)


def anchors(document):
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped."""
    found = set()
    for heading in re.findall(r"^#+\s+(.*)$", FENCE.sub("", document.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        number = 0
        while (candidate := slug if number == 0 else f"{slug}-{number}") in found:
            number += 1
        found.add(candidate)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves(document):
    broken = []
    for target in links(document):
        if re.match(r"[a-z]+:", target):
            continue  # http(s) and mailto: not fetched here
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert broken == []


def test_every_document_is_linked_from_the_readme():
    readme_links = {
        (ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")
    }
    unlinked = [d.name for d in DOCUMENTS[1:] if d.resolve() not in readme_links]
    assert unlinked == []


def test_every_document_starts_with_a_title_and_a_short_summary():
    for document in DOCUMENTS[1:]:
        title, blank, *summary = document.read_text().split("\n")
        assert title.startswith("# ") and blank == "", document.name
        paragraph = summary[: summary.index("")]
        assert 1 <= len(paragraph) <= 3, f"{document.name}: summary of {len(paragraph)} lines"


def test_the_readme_is_a_map_not_a_manual():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 260, f"README.md has {lines} lines; depth belongs in docs/"
