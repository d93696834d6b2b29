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
    missing = [path for path in sorted(named) if not (ROOT / path).exists()]
    assert named and not missing, missing
    # each row of the local stack's table names its folder and the files in it (or in a
    # package inside it: `fixes/query.py`)
    table = text[text.index("| folder | AWS part |") :]
    for row in re.findall(r"^\| `(\w+)/` \|(.*)$", table[: table.index("\n\n")], re.MULTILINE):
        folder, cells = row
        files = re.findall(r"`((?:\w+/)*\w+\.py)`", cells)
        absent = [f for f in files if not (ROOT / "infra" / "local" / folder / f).exists()]
        assert not absent, (folder, absent)


def test_every_folder_of_the_local_stack_is_in_the_architecture_document():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text[text.index("| folder | AWS part |") :]
    table = table[: table.index("\n\n")]
    documented = set(re.findall(r"^\| `(\w+)/` \|", table, re.MULTILINE))
    on_disk = {p.name for p in (ROOT / "infra" / "local").iterdir() if (p / "__init__.py").exists()}
    assert documented == on_disk
