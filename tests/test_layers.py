"""The package's layering, read from the source: a module imports only modules above it,
never another module's private names, and the simulator never the client.

The order is README's "Architecture" paragraph as built (DESIGN.md's layout plus the
modules that split out of it: exceptions, payload, scheduling, endpoints, failures,
polling, accounts, assets, catalog, reconcile).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kling_async"

#: Top to bottom: each entry may import only entries before it (a package's own modules
#: import each other freely; their order inside is the package's business).
ORDER = [
    "_version",
    "exceptions",
    "errors",
    "config",
    "payload",
    "scheduling",
    "models",
    "requests",
    "endpoints",
    "convert",
    "retry",
    "failures",
    "transport",
    "webhooks",
    "slots",
    "polling",
    "waiter",
    "accounts",
    "files",
    "assets",
    "catalog",
    "reconcile",
    "submit",
    "jobs",
    "client",
    "batch",
    "testing",
    "kling_async",  # the public names (__init__), which the CLI may use
    "cli",
]
#: What the simulator may use: it must check the client, not share its code paths.
TESTING_MAY_IMPORT = {*ORDER[: ORDER.index("models") + 1], "convert"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _runtime_imports(path: Path) -> list[tuple[list[str], list[str]]]:
    """(imported module path inside the package, names) for each import that runs (not
    under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    here = _dotted(path)
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[tuple[list[str], list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "kling_async":
                target = node.module.split(".")[1:]
            else:
                continue
            if not node.module:  # "from . import x": x is a module, or a name of the package
                base_dir = PACKAGE.joinpath(*target)
                for n in names:
                    is_module = (base_dir / f"{n}.py").exists() or (base_dir / n).is_dir()
                    found.append(([*target, n], []) if is_module else (target, [n]))
            else:
                found.append((target, names))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "kling_async":
                    found.append((parts[1:], []))
    return found


def _top(parts: list[str]) -> str:
    # The package itself (its public names) sits below everything but the CLI.
    return parts[0] if parts else "kling_async"


MODULES = [p for p in _modules() if _dotted(p)]  # the package's own __init__ imports all


@pytest.mark.parametrize("path", MODULES, ids=lambda p: ".".join(_dotted(p)))
def test_imports_go_only_upward(path: Path) -> None:
    me = _top(_dotted(path))
    assert me in ORDER, f"{me} is not in the documented order: add it to README and ORDER"
    above = set(ORDER[: ORDER.index(me)])
    wrong = sorted(
        ".".join(target)
        for target, _ in _runtime_imports(path)
        if _top(target) != me and _top(target) not in above
    )
    assert not wrong, f"{'.'.join(_dotted(path))} imports modules below it: {wrong}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: ".".join(_dotted(p)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    private = sorted(
        f"{'.'.join(target)}.{name}"
        for target, names in _runtime_imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and name != "_version"
    )
    assert not private, f"{'.'.join(_dotted(path))} uses private names: {private}"


def test_the_simulator_never_imports_the_client() -> None:
    wrong = sorted(
        f"{'.'.join(_dotted(path))} -> {'.'.join(target)}"
        for path in MODULES
        if _top(_dotted(path)) == "testing"
        for target, _ in _runtime_imports(path)
        if _top(target) not in TESTING_MAY_IMPORT | {"testing"}
    )
    assert not wrong, wrong


def test_every_module_is_in_the_order() -> None:
    tops = {_top(_dotted(p)) for p in MODULES}
    assert tops <= set(ORDER), sorted(tops - set(ORDER))
