"""The test suite on every supported Python that is installed, plus ruff and mypy once.

    nox                      # tests on 3.10-3.13 (each one found), then lint
    nox -s tests-3.12        # one interpreter
    nox -s docs dist         # mkdocs build --strict; python -m build + twine check

A supported Python that is not installed is skipped, and nox's closing summary says so
(one line per session). Interpreters installed with pyenv are found without activating
them: their bin folders are put on PATH here.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import nox

SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["tests", "lint"]
# A missing interpreter is skipped (and listed in the summary), also under CI=true, where
# nox would otherwise fail the run.
nox.options.error_on_missing_interpreters = False
nox.options.reuse_venv = "yes"


def _pyenv_bin_dirs() -> list[str]:
    """The bin folders of pyenv's installs of the supported versions (newest patch first)."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pyenv = shutil.which("pyenv")
    if pyenv:
        found = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)  # noqa: S603 (pyenv from PATH)
        root = found.stdout.strip() or root
    dirs: list[str] = []
    for version in SUPPORTED:
        dirs += sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin")))[::-1]
    return dirs


os.environ["PATH"] = os.pathsep.join([*_pyenv_bin_dirs(), os.environ.get("PATH", "")])


@nox.session(python=SUPPORTED)
def tests(session: nox.Session) -> None:
    """The whole suite (pytest's exit 5, no test collected, fails the session)."""
    session.install(".[dev]")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict, once."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, strictly (any warning fails); built to a temp folder."""
    session.install("-e", ".[docs]")
    with tempfile.TemporaryDirectory() as site:
        session.run("mkdocs", "build", "--strict", "--site-dir", site)


@nox.session
def dist(session: nox.Session) -> None:
    """The sdist and the wheel, checked by twine."""
    session.install("build", "twine")
    with tempfile.TemporaryDirectory() as out:
        session.run("python", "-m", "build", "--outdir", out)
        session.run("twine", "check", "--strict", *glob.glob(os.path.join(out, "*")))
