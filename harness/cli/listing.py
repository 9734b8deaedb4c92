"""`python -m harness list`: the registered components, what each changes, the weights of the
baseline with it (on CIFAR-10), its parameters and its hypothesis.

Counting parameters means building each model, and importing torch alone takes 1.5-3 s on a small
machine. So the listing is cached as JSON, keyed by a hash of every file in `variants/`: a second
`list` reads the cache without importing torch or the variants, and editing or adding a variant
file makes a new key. The cache lives in $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else
~/.cache/harness (harness/base/files.py); a cache that cannot be read or written is simply rebuilt.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from harness.base.files import atomic_write, cache_dir

FORMAT = 2  # bump when the cached rows change shape
HEADERS = ["component", "weights", "changes", "parameters", "hypothesis"]


def variants_key() -> str:
    """A hash of the name and bytes of every Python file of the `variants` package (found without
    importing it, so without importing torch)."""
    spec = importlib.util.find_spec("variants")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the variants package is not importable; install the project with `pip install -e .`")
    digest = hashlib.sha256(f"format {FORMAT}".encode())
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def build_rows() -> list[list[str]]:
    """Import the registry (and torch), build each component's variant and describe what it changes."""
    import variants

    rows = []
    for c in variants.all_components():
        v = variants.get(c.name)
        change = v.change()
        n = sum(p.numel() for p in v.build().parameters())
        changes = [f"model {k}={val}" for k, val in change.model.items()]
        changes += [f"train.{k}={val}" for k, val in c.train.items()]
        changes += [f"{piece} {getattr(change, piece).__name__}" for piece in variants.registry.PIECES if getattr(change, piece) is not None]
        params = ", ".join(f"{k}={val}" for k, val in c.params.items())
        rows.append([c.name, f"{n:,}", "; ".join(changes) or "nothing (the tutorial)", params or "-", c.hypothesis])
    return rows


def rows() -> list[list[str]]:
    """The listing's rows, from the cache when it holds them for these variant files."""
    path = cache_dir() / f"variants-{variants_key()}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, list) and all(isinstance(r, list) and len(r) == len(HEADERS) for r in cached):
            return cached
    except (OSError, ValueError):
        pass
    fresh = build_rows()
    try:
        atomic_write(path, json.dumps(fresh))  # whole or absent, even with two `list`s at once
    except OSError:
        pass  # an unwritable cache costs only speed
    return fresh
