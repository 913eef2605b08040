"""The public surface: __all__, __version__, py.typed, and an import that does no work."""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import os
import sys
import textwrap

import pytest
from helpers import run_command

import kling_async
from kling_async import KlingError

#: Foundation modules whose public names must reach the package (or be listed below).
FOUNDATION = ("errors", "exceptions", "models", "requests", "convert")
#: Public in their module but deliberately not re-exported by the package.
SUBMODULE_ONLY = frozenset(
    {
        # errors: the mapping is the client's business; users catch the classes.
        "error_from_response",
        "is_moderation_text",
        "parse_retry_after",
        "status_phrase",
        # requests: the allowed values are in the messages; helpers for the client.
        "ASPECT_RATIOS_IMAGE",
        "ASPECT_RATIOS_VIDEO",
        "ImageSource",
        "is_remote",
        "EMOTIONS",
        "MAX_BYTES",
        "MAX_TEXT",
        "MIN_IMAGE_SIDE",
        "PUBLIC",
        # requests: the declarative layer's parts, for the CLI, the batch and the client.
        "Alt",
        "Spec",
        "When",
        "describe_fields",
        "image_size",
        "parse_fields",
        "request_from_fields",
        "request_from_mapping",
        "sniff",
        "spec_of",
        # convert: the package exports make_converter; these are for the client/simulator.
        "CONVERTER",
        "request_body",
        "structure",
        "structure_task",
        "unstructure",
        "wire_name",
    }
)


def _ruff_sort_key(name: str) -> tuple[int, str]:
    """RUF022's isort-style order: SCREAMING_CASE, then CamelCase, then the rest."""
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted_and_unique() -> None:
    names = list(kling_async.__all__)
    assert names == sorted(names, key=_ruff_sort_key)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", kling_async.__all__)
def test_every_name_in_all_is_importable(name: str) -> None:
    assert hasattr(kling_async, name)
    obj = getattr(kling_async, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__.startswith("kling_async."), obj.__module__
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from kling_async import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(kling_async.__all__)


@pytest.mark.parametrize("module", FOUNDATION)
def test_nothing_public_is_missing(module: str) -> None:
    mod = importlib.import_module(f"kling_async.{module}")
    exported: list[str] = list(mod.__all__)
    for name in exported:
        assert hasattr(mod, name), f"kling_async.{module}.__all__ lists a missing {name}"
    missing = set(exported) - set(kling_async.__all__) - SUBMODULE_ONLY
    assert missing == set(), f"kling_async.{module} exports {sorted(missing)} but the package not"
    # The package's name is the module's object, not a copy.
    for name in set(exported) & set(kling_async.__all__):
        assert getattr(kling_async, name) is getattr(mod, name)


@pytest.mark.parametrize("module", FOUNDATION)
def test_module_all_lists_its_public_classes(module: str) -> None:
    mod = importlib.import_module(f"kling_async.{module}")
    defined = {
        name
        for name, obj in vars(mod).items()
        if inspect.isclass(obj) and obj.__module__ == mod.__name__ and not name.startswith("_")
    }
    assert defined - set(mod.__all__) == set()


def test_every_exception_is_exported() -> None:
    loaded = [m for name, m in sorted(sys.modules.items()) if name.startswith("kling_async.")]
    for mod in loaded:
        for name, obj in vars(mod).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, KlingError)
                and obj.__module__ == mod.__name__
                and not name.startswith("_")
            ):
                assert name in kling_async.__all__, f"{mod.__name__}.{name}"


def test_version() -> None:
    version = kling_async.__version__
    assert isinstance(version, str)
    assert version[:1].isdigit()
    assert "__version__" in kling_async.__all__


def test_py_typed_is_shipped() -> None:
    marker = importlib.resources.files("kling_async") / "py.typed"
    assert marker.is_file()


IMPORT_PROBE = textwrap.dedent(
    """
    import asyncio, gc, os, sys, threading

    read = []

    class Spy(type(os.environ)):
        def __getitem__(self, key):
            read.append(key)
            return super().__getitem__(key)

        def get(self, key, default=None):
            read.append(key)
            return super().get(key, default)

        def __contains__(self, key):
            read.append(key)
            return super().__contains__(key)

    env = os.environ
    os.environ = Spy(env._data, env.encodekey, env.decodekey, env.encodevalue, env.decodevalue)
    threads = threading.active_count()

    import kling_async
    from kling_async import *  # noqa

    ours = sorted({k for k in read if "USEAPI" in k.upper() or "KLING" in k.upper()})
    assert not ours, f"import read {ours}"
    assert "USEAPI_TOKEN" not in os.environ
    assert threading.active_count() == threads, "import started a thread"
    policy = getattr(asyncio.events, "_event_loop_policy", None)
    local = getattr(policy, "_local", None)
    assert getattr(local, "_loop", None) is None, "import created an event loop"
    if "aiohttp" in sys.modules:
        import aiohttp
        sessions = [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession)]
        assert not sessions, "import created a ClientSession"
    print("ok", kling_async.__version__)
    """
)


def test_import_does_no_work() -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("USEAPI", "KLING"))}
    env["PYTHONWARNINGS"] = "error"
    done = run_command([sys.executable, "-c", IMPORT_PROBE], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")
    assert done.stderr == ""
