"""Designs: which variants an ablation trains. `list` names them; `factorial` trains every subset
of its factors (2^k cells, the empty one being the baseline); `leave-one-out` trains the full model,
the full model without each of its components, and the baseline."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from harness.base.errors import UsageError

KINDS = ("list", "factorial", "leave-one-out")
MAX_FACTORS = 6  # 2^6 = 64 cells; more needs `--yes` (or `allow_large = true`)


@dataclass(frozen=True)
class Design:
    kind: str = "list"
    factors: tuple[str, ...] = ()  # factorial: its factors; leave-one-out: the full model's components
    allow_large: bool = False  # more than MAX_FACTORS factors


def to_tag(design: Design) -> str:
    """The design as recorded on the MLflow experiment (JSON), so `report` rebuilds from the store alone."""
    return json.dumps({"kind": design.kind, "factors": list(design.factors)})


def from_tag(text: str) -> Design:
    """The design `to_tag` wrote; a list design when nothing was recorded."""
    recorded = json.loads(text or "{}")
    kind, factors = recorded.get("kind", "list"), recorded.get("factors", [])
    if kind not in KINDS or not isinstance(factors, list) or not all(isinstance(f, str) and f for f in factors):
        raise ValueError(f"expected kind one of {', '.join(KINDS)} and a list of factor names")
    return Design(kind, tuple(factors))


def cell(components) -> str:
    """The canonical variant name of a set of components ('baseline' when empty)."""
    return "+".join(sorted(components)) or "baseline"


def components_of(variant: str) -> frozenset[str]:
    return frozenset() if variant == "baseline" else frozenset(variant.split("+"))


def expand(design: Design) -> tuple[str, ...]:
    """The design's variants, canonically named: the baseline first, then by size and name."""
    f = design.factors
    if design.kind == "factorial":
        cells = [cell(c) for r in range(len(f) + 1) for c in itertools.combinations(sorted(f), r)]
    else:
        cells = ["baseline", *(cell(set(f) - {x}) for x in sorted(f)), cell(f)]
    return tuple(sorted(dict.fromkeys(cells), key=lambda v: (len(components_of(v)), v)))


def from_table(table: dict) -> Design:
    """A checked Design from the `[design]` table: kind, and `factors` (factorial) or `full` (leave-one-out)."""
    if not isinstance(table, dict):
        raise UsageError(f"design: expected a table such as {{kind = \"factorial\", factors = [...]}}, got {table!r}")
    kind = table.get("kind", "list")
    if kind not in KINDS:
        raise UsageError(f"design.kind: {kind!r} is not allowed; expected one of {', '.join(KINDS)}")
    key = {"factorial": "factors", "leave-one-out": "full"}.get(kind)
    allowed = {"kind", "allow_large"} | ({key} if key else set())
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"design.{unknown[0]}: not a setting of a {kind} design; allowed: {', '.join(sorted(allowed))}")
    allow_large = table.get("allow_large", False)
    if not isinstance(allow_large, bool):
        raise UsageError(f"design.allow_large: expected true or false, got {allow_large!r}")
    if key is None:
        return Design(kind, (), allow_large)
    factors = table.get(key)
    if isinstance(factors, str):
        factors = [p.strip() for p in factors.split(",")]
    if not isinstance(factors, list) or not all(isinstance(x, str) and x for x in factors):
        raise UsageError(f"design.{key}: expected a list of component names, e.g. [\"dropout\", \"batchnorm\"], got {factors!r}")
    _check_factors(kind, key, factors, allow_large)
    return Design(kind, tuple(factors), allow_large)


def _check_factors(kind: str, key: str, factors: list[str], allow_large: bool) -> None:
    import variants as registry

    least = 1 if kind == "factorial" else 2
    if len(factors) < least:
        raise UsageError(f"design.{key}: a {kind} design needs at least {least} component(s), got {len(factors)}")
    for x in factors:
        if x == "baseline" or "+" in x:
            raise UsageError(f"design.{key}: {x!r} is not allowed; name single components (the baseline is in every design)")
        if x not in registry.names():
            raise UsageError(f"design.{key}: {registry.unknown_message(x)}")
        if factors.count(x) > 1:
            raise UsageError(f"design.{key}: {x!r} is listed twice")
    if len(factors) > MAX_FACTORS and not allow_large and kind == "factorial":
        raise UsageError(f"design.{key}: {len(factors)} factors make {2 ** len(factors)} cells × seeds runs; "
                         f"at most {MAX_FACTORS} without --yes (or allow_large = true)")
