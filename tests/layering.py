"""Reads the imports of the harness package (ast, every import statement, also
inside functions) and checks the layering: a module imports only modules of its own layer or of
the layers below it, and no set of modules imports itself round in a circle.

The layers, lowest first, are LAYERS; `harness/__init__.py` (the public surface) and
`harness/__main__.py` sit above them all. tests/project/test_layers.py runs it on the tree and on broken
copies of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

LAYERS = (
    "base",
    "data",
    "training",
    "variants",
    "settings",
    "analysis",
    "tracking",
    "report",
    "running",
    "tuning",
    "api",
    "cli",
    "surface",
)
# imports the user's own files and modules by name; never a module of the project
USER_CODE = ("harness/variants/plugins.py",)


def dynamic(root: Path) -> list[str]:
    """Imports by string (importlib.import_module, __import__) outside the public surface, which
    the graph cannot see, as 'file:line'."""
    found = []
    for module, path in modules(root).items():
        if module == "harness" or path.relative_to(root).as_posix() in USER_CODE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in ("import_module", "__import__"):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `harness` under `root`."""
    out = {}
    for path in sorted((root / "harness").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in LAYERS:
        return "surface"  # harness/__init__.py, __main__.py and any other module at the top of harness/
    return parts[1]


def surface(root: Path) -> dict[str, str]:
    """The public names of `harness/__init__.py` and the module each comes from (its `_EXPORTS`)."""
    for node in ast.parse((root / "harness" / "__init__.py").read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            exports = ast.literal_eval(node.value)
            return {name: target[0] if isinstance(target, tuple) else target for name, target in exports.items()}
    return {}


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (`from ..report import x` inside harness.tracking.y: harness.report)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports(module: str, path: Path, known: set[str], public: dict[str, str]) -> set[str]:
    """The project modules that `module` imports anywhere in its file. A public name taken from
    the surface (`from harness import register`) counts as an import of the module that defines
    it, so a component file may use the surface and still sit in its layer."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            names = [
                public[a.name]
                if base == "harness" and a.name in public
                else f"{base}.{a.name}"
                if f"{base}.{a.name}" in known
                else base
                for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n in known and n != module}
    return found


def graph(root: Path) -> dict[str, set[str]]:
    mods, public = modules(root), surface(root)
    return {m: imports(m, p, set(mods), public) for m, p in mods.items()}


def upward(g: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer (or of a layer the list does not know), as 'a -> b'."""
    bad = []
    for a, targets in sorted(g.items()):
        for b in sorted(targets):
            la, lb = layer(a), layer(b)
            if la not in LAYERS or lb not in LAYERS or LAYERS.index(lb) > LAYERS.index(la):
                bad.append(f"{a} ({la}) -> {b} ({lb})")
    return bad


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out
