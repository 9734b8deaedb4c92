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
import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import sysconfig
import traceback
from pathlib import Path

from harness.data import datasets
from harness.variants import registry
from harness.variants.registry import RegistryError

ENTRY_POINT_GROUP = "harness.components"
_INSTALLED = tuple(
    str(Path(p).resolve()) for p in {*sysconfig.get_paths().values(), str(Path(registry.__file__).resolve().parents[1])}
)


@dataclasses.dataclass(frozen=True)
class _Loaded:
    digest: str  # sha256 of the file's bytes and its helpers', when it was imported
    helpers: tuple[tuple[str, str], ...]  # (module, file) of the user's own modules it imported
    source: bytes = b""  # the file's bytes as imported: the code its components run (and a logged model carries)


_files: dict[str, _Loaded] = {}  # resolved path -> what it was when it was imported


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
            raise RegistryError(
                f"{where}: {entry!r} is not allowed; expected the path of a .py file or a module name (e.g. mypkg.ablations)"
            )
        entry = entry.strip()
        files.append(_load_file(Path(entry), where) if is_file_entry(entry) else _load_module(entry, where))
    return files


def _hash(resolved: str, helpers: tuple[tuple[str, str], ...], source: bytes | None = None) -> str:
    """sha256 of the file's bytes (`source` when given: as imported) and each helper module's name
    and bytes (not where they live: the same code in another folder or on another machine hashes alike)."""
    h = hashlib.sha256()
    for label, f in (("", resolved), *helpers):
        try:
            data = source if source is not None and not label else Path(f).read_bytes()
            h.update(label.encode() + b"\0" + data + b"\0")
        except OSError:
            h.update(label.encode() + b"\0missing\0")
    return h.hexdigest()


def _own_modules(before: set[str]) -> tuple[tuple[str, str], ...]:
    """The modules imported since `before` whose files are the user's own (not the standard
    library, not an installed package, not this project's): their code decides what a component does."""
    out = []
    for name in sorted(set(sys.modules) - before):
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and file.endswith(".py") and is_users_file(file):
            out.append((name, str(Path(file).resolve())))
    return tuple(out)


def is_users_file(file: str) -> bool:
    """Whether `file` is the user's own code: not the standard library, an installed package or the harness."""
    try:
        return not str(Path(file).resolve()).startswith(_INSTALLED)
    except OSError:
        return False


def _forget(resolved: str, loaded: _Loaded | None) -> None:
    registry.unregister_from(resolved)
    datasets.forget_from(resolved)
    for module, _ in loaded.helpers if loaded else ():
        sys.modules.pop(module, None)  # an edited helper is imported again with the file


def _load_file(path: Path, where: str) -> str:
    if not path.is_file():
        raise RegistryError(
            f"{where}: {str(path)!r} is not a file; expected the path of a .py file or a module name (e.g. mypkg.ablations)"
        )
    resolved = str(path.resolve())
    try:
        source = Path(resolved).read_bytes()
    except OSError as e:
        raise RegistryError(f"{where}: cannot read {str(path)!r}: {e.strerror or e}") from None
    known = _files.get(resolved)
    if known is not None and _hash(resolved, known.helpers) == known.digest:
        return resolved  # unchanged, and so are its helpers: not imported twice
    name = path.stem
    if not name.isidentifier():
        raise RegistryError(
            f"{where}: {str(path)!r}: the file's name must be a Python identifier (it names the module), e.g. my_components.py"
        )
    held = sys.modules.get(name)
    if held is not None and getattr(held, "__file__", None) != resolved:
        raise RegistryError(
            f"{where}: {str(path)!r}: a module named {name!r} is already imported "
            f"(from {getattr(held, '__file__', None) or 'built-ins'}); rename the file"
        )
    _forget(resolved, known)  # an edited file replaces what it registered before
    _files.pop(resolved, None)
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.modules[name] = module
    try:
        with _origin(f"file {path}"):  # the bytes read above, not the file again: the code hashed is the code run
            exec(compile(source, resolved, "exec"), module.__dict__)  # noqa: S102 - the user's component file
    except BaseException as e:
        helpers = _own_modules(before | {name})
        sys.modules.pop(name, None)
        _forget(resolved, _Loaded("", helpers))
        if isinstance(e, RegistryError) or isinstance(e, KeyboardInterrupt):
            raise
        if isinstance(e, SystemExit):
            raise RegistryError(f"{where}: {path}, {_located(e, [resolved])} (a component file must not exit)") from e
        raise RegistryError(f"{where}: {path}, {_located(e, [resolved])}") from e
    helpers = _own_modules(before | {name})
    digest = _hash(resolved, helpers, source)
    mine = [c for c in registry.all_components() if c.path == resolved and not c.shipped]
    if not mine and not datasets.names_from(resolved):
        sys.modules.pop(name, None)
        raise RegistryError(
            f"{where}: {path} registers no component or dataset; decorate a function with @harness.register(...)"
            " (or call harness.register_dataset)"
        )
    for c in mine:  # the component's code is its file and the user's own modules it imports
        registry._REGISTRY[c.name] = dataclasses.replace(c, digest=digest[:16])
    _files[resolved] = _Loaded(digest, helpers, source)
    return resolved


def imported_source(path: str) -> bytes | None:
    """The bytes of the component file `path` as this process imported them, the code its runs
    train with (the file may have been edited since); None for a file not imported from a path (a
    module of an installed package)."""
    loaded = _files.get(path)
    return None if loaded is None else loaded.source


def helpers_changed(path: str) -> bool:
    """Whether a module of the user's own that the component file `path` imported has changed since
    (its new code is not what the file's runs train with, and a model logged now would run it)."""
    loaded = _files.get(path)
    return loaded is not None and _hash(path, loaded.helpers, loaded.source) != loaded.digest


def _load_module(name: str, where: str) -> str:
    try:
        with _origin(f"module {name}"):
            module = importlib.import_module(name)
    except RegistryError:
        raise
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise RegistryError(
                f"{where}: {name!r} is neither a file nor an importable module; "
                "expected the path of a .py file or a module on the Python path (e.g. mypkg.ablations)"
            ) from e
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
    if isinstance(e, SystemExit):
        what = f"SystemExit: sys.exit({e.code!r}) was called"
    else:
        message = str(e).splitlines()[0] if str(e) else ""
        what = f"{type(e).__name__}: {message}" if message else type(e).__name__
    if frame is None:
        return what
    deepest = frames[-1]
    below = f" (raised in {deepest.filename}, line {deepest.lineno})" if inside and deepest is not frame else ""
    return f"{'' if inside else frame.filename + ', '}line {frame.lineno}{below}: {what}"


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
