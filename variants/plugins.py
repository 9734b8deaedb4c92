"""Components from the user's own code: `--components FILE_OR_MODULE` (and `components = [...]`
in an experiment file), and the `harness.components` entry points of installed packages, which
load with this package by themselves.

A file is imported as a module named after its stem, so a model pickled with one of its classes
loads again wherever that file is on the path (the logged MLflow model carries it as code). A file
loaded again after an edit replaces the components it registered; unchanged, it is not imported
twice (a notebook may call `harness.run` many times). Whatever goes wrong while importing is one
line naming the file, the line and the error: a `RegistryError`, which the command line reports
with exit 2 (`--debug` shows the traceback).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from variants import registry
from variants.registry import RegistryError

ENTRY_POINT_GROUP = "harness.components"
_files: dict[str, str] = {}  # resolved path -> the hash of the bytes it had when it was imported


@contextlib.contextmanager
def _origin(label: str):
    before = registry._LOADING["origin"]
    registry._LOADING["origin"] = label
    try:
        yield
    finally:
        registry._LOADING["origin"] = before


def is_file_entry(entry: str) -> bool:
    """A `--components` entry names a file when it ends in .py or holds a path separator; else a module."""
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def load(entries: list[str] | tuple[str, ...], where: str = "--components") -> list[str]:
    """Import each entry (a .py file or a dotted module); returns the files they came from."""
    files = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise RegistryError(f"{where}: {entry!r} is not allowed; expected the path of a .py file or a module name (e.g. mypkg.ablations)")
        entry = entry.strip()
        files.append(_load_file(Path(entry), where) if is_file_entry(entry) else _load_module(entry, where))
    return files


def _load_file(path: Path, where: str) -> str:
    if not path.is_file():
        raise RegistryError(f"{where}: {str(path)!r} is not a file; expected the path of a .py file or a module name (e.g. mypkg.ablations)")
    resolved = str(path.resolve())
    try:
        digest = hashlib.sha256(Path(resolved).read_bytes()).hexdigest()
    except OSError as e:
        raise RegistryError(f"{where}: cannot read {str(path)!r}: {e.strerror or e}") from None
    if _files.get(resolved) == digest:
        return resolved
    name = path.stem
    if not name.isidentifier():
        raise RegistryError(f"{where}: {str(path)!r}: the file's name must be a Python identifier (it names the module), e.g. my_components.py")
    held = sys.modules.get(name)
    if held is not None and getattr(held, "__file__", None) != resolved:
        raise RegistryError(f"{where}: {str(path)!r}: a module named {name!r} is already imported "
                            f"(from {getattr(held, '__file__', None) or 'built-ins'}); rename the file")
    registry.unregister_from(resolved)  # an edited file replaces what it registered before
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _origin(f"file {path}"):
            spec.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(name, None)
        registry.unregister_from(resolved)
        _files.pop(resolved, None)
        if isinstance(e, RegistryError) or not isinstance(e, Exception):
            raise
        raise RegistryError(f"{where}: {path}, {_located(e, [resolved])}") from e
    _files[resolved] = digest
    return resolved


def _load_module(name: str, where: str) -> str:
    try:
        with _origin(f"module {name}"):
            module = importlib.import_module(name)
    except RegistryError:
        raise
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise RegistryError(f"{where}: {name!r} is neither a file nor an importable module; "
                                "expected the path of a .py file or a module on the Python path (e.g. mypkg.ablations)") from e
        raise RegistryError(f"{where}: module {name}, {_located(e, [])}") from e
    except Exception as e:  # noqa: BLE001 - any failure of the user's code is reported in one line
        raise RegistryError(f"{where}: module {name}, {_located(e, [])}") from e
    return str(getattr(module, "__file__", "") or "")


def _located(e: BaseException, files: list[str]) -> str:
    """`line N: Error: message` at the deepest frame in `files` (else the deepest frame, with its file)."""
    if isinstance(e, SyntaxError) and e.lineno is not None:
        place = "" if e.filename in files else f"{e.filename}, "
        return f"{place}line {e.lineno}: SyntaxError: {e.msg}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib._bootstrap" not in f.filename]
    inside = [f for f in frames if f.filename in files]
    frame = (inside or frames or [None])[-1]
    message = str(e).splitlines()[0] if str(e) else ""
    what = f"{type(e).__name__}: {message}" if message else type(e).__name__
    if frame is None:
        return what
    return f"{'' if inside else frame.filename + ', '}line {frame.lineno}: {what}"


def load_entry_points() -> None:
    """Import every installed package's `harness.components` entry point (a module, or a function
    in one that registers its components when called)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        label = f"entry point {ep.name}" + (f" ({dist.name} {dist.version})" if dist is not None else "")
        try:
            with _origin(label):
                target = ep.load()
                if ep.attr and callable(target):
                    target()
        except RegistryError:
            raise
        except Exception as e:  # noqa: BLE001 - an installed plugin's failure, in one line
            raise RegistryError(f"{label} = {ep.value}: {_located(e, [])}; fix or uninstall that package") from e

