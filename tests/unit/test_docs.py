"""The project's documents stand on their own: nothing points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "bench" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]


def test_no_document_points_outside_the_repository():
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        assert not re.search(r"\.\./(shared|\.library)", text), document


def test_the_architecture_document_names_only_files_that_exist():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:backend|auth|client_sdk|infra|tests|bench)/[\w./]+)`", text))
    local = {f"infra/local/{n}" for n in re.findall(r"`(\w+\.py)`", text)}
    missing = [path for path in sorted(named | local) if not (ROOT / path).exists()]
    assert named and not missing, missing
