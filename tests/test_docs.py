"""The documentation pages: every example they include exists and is run by a test, and no
page is left with a placeholder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_examples import CASES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPET = re.compile(r'--8<-- "([^"]+)"')

pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="docs/ is not in this copy")


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def test_every_included_example_exists_and_is_run_by_a_test() -> None:
    included = {m for page in pages() for m in SNIPPET.findall(page.read_text("utf-8"))}
    scripts = {p for p in included if p.endswith(".py")}
    assert scripts
    for script in scripts:
        assert (ROOT / script).is_file(), script
    assert scripts <= {script for script, _ in CASES}


def test_every_docs_example_is_included_in_a_page() -> None:
    included = {m for page in pages() for m in SNIPPET.findall(page.read_text("utf-8"))}
    for script in (DOCS / "examples").glob("*.py"):
        assert f"docs/examples/{script.name}" in included, script.name


def test_no_page_keeps_a_placeholder() -> None:
    for page in pages():
        text = page.read_text("utf-8")
        assert "NEW ENDPOINTS" not in text, page.name
        assert "once they land" not in text, page.name
