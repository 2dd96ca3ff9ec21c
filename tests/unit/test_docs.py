"""The project's documents stand alone: every path they name is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "binder/README.md"]
#: Markdown links ``[text](target)`` and code spans that name a relative path.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = re.compile(r"\.\./(?:shared|design)\b|\.\./\.\./")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(document: Path) -> None:
    text = document.read_text()
    assert not OUTSIDE.search(text), f"{document.name} points outside the repository"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{document.name}: {target} is outside"
        assert resolved.exists(), f"{document.name}: {target} does not exist"
