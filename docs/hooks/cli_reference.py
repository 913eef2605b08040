"""MkDocs hook: the CLI reference, rendered from ``kling_async.cli.build_parser()`` at build time.

A page that contains the line ``<!-- cli-reference -->`` gets it replaced by the help of
``kling-async`` and of each of its subcommands, so the reference cannot drift from the
parser. Only the public ``build_parser`` is imported, so this keeps working whether the CLI
is one module or a package that re-exports it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- cli-reference -->"
# argparse wraps help to $COLUMNS: fix it so that the page is the same on every machine.
WIDTH = "100"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """The subcommands of ``parser`` in the order they were added (public parser API only)."""
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse offers no public way to list subparsers
        choices = getattr(action, "choices", None)
        if isinstance(action, argparse._SubParsersAction) and isinstance(choices, dict):
            seen: set[int] = set()
            for name, sub in choices.items():
                if id(sub) not in seen:  # aliases map several names to one parser
                    seen.add(id(sub))
                    found.append((name, sub))
    return found


def render_cli_reference() -> str:
    """Markdown: a section with the ``--help`` text of the program and of each subcommand."""
    from kling_async.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parts = ["## `kling-async`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser):
            parts += [f"## `kling-async {name}`", "", "```text", sub.format_help().rstrip()]
            parts += ["```", ""]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the marker line with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_cli_reference())
