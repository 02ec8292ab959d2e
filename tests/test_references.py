"""Documents the code cites exist in the repository (a citation of a missing file misleads)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"[\w./-]+\.md\b")


def test_every_markdown_file_the_code_cites_is_in_the_repository() -> None:
    sources = [p for folder in ("musicdet", "search", "bench", "tests", ".ci")
               for p in sorted((ROOT / folder).rglob("*.py"))]
    missing = {f"{source.relative_to(ROOT)}: {name}"
               for source in sources for name in CITED.findall(source.read_text())
               if not (ROOT / name).exists()}
    assert not missing
