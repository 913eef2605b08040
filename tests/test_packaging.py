"""What a user of the distribution relies on: one version, honest metadata, the docs' CLI page."""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

import kling_async
from kling_async.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


def test_version_has_one_source() -> None:
    assert metadata.version("kling-async") == kling_async.__version__


def test_metadata_declares_every_supported_python() -> None:
    meta = metadata.metadata("kling-async")
    classifiers = meta.get_all("Classifier") or []
    for version in SUPPORTED:
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert meta["Requires-Python"] == f">={SUPPORTED[0]}"
    assert meta["License-Expression"] == "MIT"


def test_license_file_is_mit() -> None:
    license_file = ROOT / "LICENSE"
    if not license_file.is_file():
        pytest.skip("LICENSE is not in this copy of the project")
    assert license_file.read_text().startswith("MIT License")


def _cli_hook() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "cli_reference.py"
    if not path.is_file():
        pytest.skip("docs/ is not in this copy of the project")
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_reference_shows_every_subcommand() -> None:
    page = _cli_hook().on_page_markdown("# Command line\n\n<!-- cli-reference -->\n")
    assert "<!-- cli-reference -->" not in page
    headings = re.findall(r"^## `(kling-async[^`]*)`$", page, flags=re.MULTILINE)
    commands = build_parser().format_help()
    assert headings[0] == "kling-async"
    assert len(headings) > 5
    for heading in headings[1:]:
        assert heading.split()[1] in commands
        assert f"usage: {heading}" in page


def test_docs_cli_reference_leaves_other_pages_alone() -> None:
    page = "# Concepts\n\nno marker here\n"
    assert _cli_hook().on_page_markdown(page) == page
