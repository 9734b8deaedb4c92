"""`python -m harness list [--components FILE_OR_MODULE]`: the registered components, what each
changes, the weights of the baseline with it (on CIFAR-10), its parameters, its hypothesis and
where it comes from (shipped, a file or module of `--components`, an installed entry point).

Counting parameters means building each model, and importing torch alone takes 1.5-3 s on a small
machine. So the listing is cached as JSON, keyed by a hash of every file in `harness/variants/`: a second
`list` reads the cache without importing torch or the variants, and editing or adding a variant
file, a `--components` file or an installed entry point makes a new key. The cache lives in $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else
~/.cache/harness (harness/base/files.py); a cache that cannot be read or written is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from harness.base.files import atomic_write, cache_dir

FORMAT = 3  # bump when the cached rows change shape
ENTRY_POINT_GROUP = "harness.components"  # plugins.ENTRY_POINT_GROUP, spelt here so that `list` does not import torch (a test keeps them equal)
HEADERS = ["component", "weights", "changes", "parameters", "hypothesis", "from"]


def variants_key(components: list[str] = ()) -> str:
    """A hash of the name and bytes of every Python file of the `harness.variants` package, of each
    `--components` entry (a file's bytes, a module's file) and of every installed entry point's
    module (all found without importing them, so without importing torch)."""
    digest = hashlib.sha256(f"format {FORMAT}".encode())
    for path in sorted((Path(__file__).resolve().parents[1] / "variants").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for entry in components:
        digest.update(entry.encode() + b"\0" + _bytes_of(entry) + b"\0")
    for name, data in _entry_point_files():
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:20]


def _entry_point_files() -> list[tuple[str, bytes]]:
    """(entry point, bytes of its module's file) for every installed `harness.components` entry
    point (harness/variants/plugins.py's group), found without importing them or `harness.variants`."""
    from importlib.metadata import entry_points

    return sorted((f"{ep.name}={ep.value}", _bytes_of(ep.module)) for ep in entry_points(group=ENTRY_POINT_GROUP))


def _bytes_of(entry: str) -> bytes:
    """A `--components` entry's source: the file's bytes, or the module's file (b"" when not found: loading it says why)."""
    try:
        # a file, as harness/variants/plugins.py tells them apart
        if entry.endswith(".py") or "/" in entry or "\\" in entry:
            return Path(entry).read_bytes()
        spec = importlib.util.find_spec(entry)  # imports the parent packages of a dotted name
        return Path(spec.origin).read_bytes() if spec and spec.origin else b""
    except Exception:  # noqa: BLE001 - whatever fails here fails again, in one line, when the entry is imported
        return b""


def build_rows(components: list[str] = ()) -> list[list[str]]:
    """Import the registry (and torch) and the user's components, build each component's variant and describe what it changes."""
    import torch

    from harness import variants
    from harness.training import engine
    from harness.variants import plugins

    plugins.load(components)
    rows = []
    for c in variants.all_components():
        v = variants.get(c.name)
        try:
            net = engine.materialize(v.build(), torch.zeros((1, *variants.registry.CIFAR10_SHAPE), dtype=torch.uint8))
            weights = f"{sum(p.numel() for p in net.parameters()):,}"
        # e.g. an architecture for grey images only: `run` checks it on its data
        except (
            TypeError,
            ValueError,
            RuntimeError,
        ):
            weights = "does not build for 3×32×32"
        params = ", ".join(f"{k}={val}" for k, val in c.params.items())
        origin = f"shipped ({Path(c.path).name})" if c.shipped else c.origin
        rows.append([c.name, weights, v.describe(), params or "-", c.hypothesis, origin])
    return rows


def cached_names() -> list[str] | None:
    """The shipped component names, as the last `list` or successful `run` saw them for these
    variant files, without importing torch or the variants; None when neither has seen them, or
    when installed entry points add components (their names may depend on code the key does not cover)."""
    if _entry_point_files():
        return None
    key = variants_key()
    for name in (f"variant-names-{key}.json", f"variants-{key}.json"):
        try:
            cached = json.loads((cache_dir() / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        names = [r[0] if isinstance(r, list) and r else r for r in cached] if isinstance(cached, list) else []
        if names and all(isinstance(n, str) for n in names):
            return sorted(names)
    return None


def remember_names() -> None:
    """Save the shipped component names for `cached_names`, after a `run` resolved its variants."""
    from harness import variants

    if _entry_point_files():
        return
    try:
        atomic_write(cache_dir() / f"variant-names-{variants_key()}.json", json.dumps(variants.names()))
    except OSError:
        pass  # an unwritable cache costs only speed


def rows(components: list[str] = ()) -> list[list[str]]:
    """The listing's rows, from the cache when it holds them for these variant files."""
    path = cache_dir() / f"variants-{variants_key(components)}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, list) and all(isinstance(r, list) and len(r) == len(HEADERS) for r in cached):
            return cached
    except (OSError, ValueError):
        pass
    fresh = build_rows(components)
    try:
        atomic_write(path, json.dumps(fresh))  # whole or absent, even with two `list`s at once
    except OSError:
        pass  # an unwritable cache costs only speed
    return fresh
