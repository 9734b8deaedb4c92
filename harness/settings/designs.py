"""Designs: which variants an ablation trains. `list` names them; `factorial` trains every subset
of its factors (2^k cells, the empty one being the baseline); `leave-one-out` trains the full model,
the full model without each of its components, and the baseline; `variance` trains each named
variant once per source of randomness, varying that source alone over the seeds (`v@init`,
`v@order`, ...) and once varying all of them (`v@all`), so the report can say where the noise
comes from (harness/analysis/variance.py)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from harness.base.errors import UsageError
from harness.training.settings import SOURCES, Sources

KINDS = ("list", "factorial", "leave-one-out", "variance")
CELLS = ("factorial", "leave-one-out")  # the designs that name their variants (cells) and estimate effects
VARIANCE_SOURCES = (*SOURCES, "split")  # what a variance design can vary one at a time
ALL = "all"  # `v@all`: every source follows the run's seed
# the [design] key of each kind's list
TABLE_KEY = {
    "factorial": "factors",
    "leave-one-out": "full",
    "variance": "sources",
}
MAX_FACTORS = 6  # 2^6 = 64 cells; more needs `--yes` (or `allow_large = true`)


@dataclass(frozen=True)
class Design:
    kind: str = "list"
    # factorial: its factors; leave-one-out: the full model's components; variance: the sources
    factors: tuple[str, ...] = ()
    allow_large: bool = False  # more than MAX_FACTORS factors
    # variance: (variant, the sources it draws nothing from and so are not varied for it), e.g.
    # (("baseline", ("dropout", "augment")),): its `v@dropout` runs would all be the same run
    skipped: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def skipped_for(self, variant: str) -> tuple[str, ...]:
        return dict(self.skipped).get(variant, ())


def to_tag(design: Design) -> str:
    """The design as recorded on the MLflow experiment (JSON), so `report` rebuilds from the store alone."""
    recorded = {"kind": design.kind, "factors": list(design.factors)}
    return json.dumps(recorded | ({"skipped": {v: list(s) for v, s in design.skipped}} if design.skipped else {}))


def from_tag(text: str) -> Design:
    """The design `to_tag` wrote; a list design when nothing was recorded."""
    recorded = json.loads(text or "{}")
    kind, factors = recorded.get("kind", "list"), recorded.get("factors", [])
    skipped = recorded.get("skipped", {})
    if kind not in KINDS or not isinstance(factors, list) or not all(isinstance(f, str) and f for f in factors):
        raise ValueError(f"expected kind one of {', '.join(KINDS)} and a list of factor names")
    if not isinstance(skipped, dict) or not all(
        isinstance(s, list) and set(s) <= set(factors) for s in skipped.values()
    ):
        raise ValueError("expected skipped sources as a table of variant -> list of the design's sources")
    return Design(kind, tuple(factors), skipped=tuple((v, tuple(s)) for v, s in skipped.items()))


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


def flags(kind: str | None, factors: str | None, allow_large: bool = False) -> dict:
    """`--design KIND --factors a,b --yes` (or the API's `design=`, `factors=`, `yes=`) as dotted
    [design] settings: `factors`, `full` for leave-one-out, `sources` for variance."""
    if kind is None:
        if factors is not None:
            raise UsageError("--factors: give it with --design factorial, leave-one-out or variance")
        return {"design.allow_large": True} if allow_large else {}
    if kind in CELLS and factors is None:
        raise UsageError(f"--factors: required with --design {kind}, e.g. --factors dropout,batchnorm")
    out = {"design.kind": kind}
    if factors is not None:
        out[f"design.{TABLE_KEY.get(kind, 'factors')}"] = [f.strip() for f in factors.split(",")]
    return out | ({"design.allow_large": True} if allow_large else {})


def from_table(table: dict) -> Design:
    """A checked Design from the `[design]` table: kind, and `factors` (factorial) or `full` (leave-one-out)."""
    if not isinstance(table, dict):
        raise UsageError(f'design: expected a table such as {{kind = "factorial", factors = [...]}}, got {table!r}')
    kind = table.get("kind", "list")
    if kind not in KINDS:
        raise UsageError(f"design.kind: {kind!r} is not allowed; expected one of {', '.join(KINDS)}")
    key = TABLE_KEY.get(kind)
    allowed = {"kind", "allow_large"} | ({key} if key else set())
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(
            f"design.{unknown[0]}: not a setting of a {kind} design; allowed: {', '.join(sorted(allowed))}"
        )
    allow_large = table.get("allow_large", False)
    if not isinstance(allow_large, bool):
        raise UsageError(f"design.allow_large: expected true or false, got {allow_large!r}")
    if key is None:
        return Design(kind, (), allow_large)
    factors = table.get(key)
    if isinstance(factors, str):
        factors = [p.strip() for p in factors.split(",")]
    if kind == "variance":
        return Design(kind, _check_sources(factors), allow_large)
    if not isinstance(factors, list) or not all(isinstance(x, str) and x for x in factors):
        raise UsageError(
            f'design.{key}: expected a list of component names, e.g. ["dropout", "batchnorm"], got {factors!r}'
        )
    _check_factors(kind, key, factors, allow_large)
    return Design(kind, tuple(factors), allow_large)


def _check_factors(kind: str, key: str, factors: list[str], allow_large: bool) -> None:
    import harness.variants as registry

    least = 1 if kind == "factorial" else 2
    if len(factors) < least:
        raise UsageError(f"design.{key}: a {kind} design needs at least {least} component(s), got {len(factors)}")
    for x in factors:
        if x == "baseline" or "+" in x:
            raise UsageError(
                f"design.{key}: {x!r} is not allowed; name single components (the baseline is in every design)"
            )
        if x not in registry.names():
            raise UsageError(f"design.{key}: {registry.unknown_message(x)}")
        if factors.count(x) > 1:
            raise UsageError(f"design.{key}: {x!r} is listed twice")
    if len(factors) > MAX_FACTORS and not allow_large and kind == "factorial":
        raise UsageError(
            f"design.{key}: {len(factors)} factors make {2 ** len(factors)} cells × seeds runs; "
            f"at most {MAX_FACTORS} without --yes (or allow_large = true)"
        )


def _check_sources(sources) -> tuple[str, ...]:
    """A variance design's sources: a list of distinct names of VARIANCE_SOURCES; not given, all of
    them (config drops `split` when the split takes no seed)."""
    if sources is None:
        return ()
    if not isinstance(sources, list) or not sources or not all(isinstance(x, str) and x for x in sources):
        raise UsageError(
            f'design.sources: expected a list of sources, e.g. ["init", "order"], from {", ".join(VARIANCE_SOURCES)}; got {sources!r}'
        )
    for x in sources:
        if x not in VARIANCE_SOURCES:
            raise UsageError(
                f"design.sources: {x!r} is not a source of variation; expected some of {', '.join(VARIANCE_SOURCES)}"
            )
        if sources.count(x) > 1:
            raise UsageError(f"design.sources: {x!r} is listed twice")
    return tuple(sources)


def by_source(
    variants: list[str], sources: tuple[str, ...], skipped: dict[str, tuple[str, ...]] | None = None
) -> tuple[str, ...]:
    """A variance design's variants: for each variant, `v@all` then `v@SOURCE` for each source it
    draws from (`skipped`: per variant, the sources it draws nothing from)."""
    skipped = skipped or {}
    return tuple(f"{v}@{s}" for v in variants for s in (ALL, *sources) if s not in skipped.get(v, ()))


def split_source(name: str) -> tuple[str, str | None]:
    """(the variant, the source a variance design varies in it, or None): `dropout@init` is
    (`dropout`, `init`); a plain variant name is (name, None)."""
    base, at, source = name.partition("@")
    return (base, source) if at else (name, None)


def bases(names) -> list[str]:
    """The variants a variance design decomposes, in order, from its variants' names."""
    return list(dict.fromkeys(split_source(n)[0] for n in names))


PIN_STEP = 1_000_003  # the pinned sources' seed is the first seed + this (mod 2**32): a seed no run varies


def pin_seed(seeds: tuple[int, ...]) -> int:
    """The seed a variance design pins the sources it does not vary to: not one of the runs' seeds,
    so that no source's first run is another source's first run too (pinning them to the first seed
    made `v@init`, `v@order`, ... and `v@all` the same run at that seed). It depends on the first
    seed only, so adding seeds later keeps every run; a seed list that holds it is refused."""
    pin = (seeds[0] + PIN_STEP) % 2**32
    if pin in seeds:
        raise UsageError(
            f"seeds: a variance design pins the sources it does not vary to seed {pin} (the first seed + {PIN_STEP:,}), "
            f"which is also one of its seeds; drop seed {pin} or start the list at another seed"
        )
    return pin


def fixed_sources(source: str, pin: int) -> tuple[Sources, int | str]:
    """What a run of `v@source` draws from, and its split's seed: `source` follows the run's seed
    and every other source, the split included, is pinned to `pin` (`pin_seed` of the design's
    seeds); the split follows the run's seed ("per_seed") for `split` and `all`."""
    if source == ALL:
        return Sources(), "per_seed"
    pinned = Sources(**{s: (None if s == source else pin) for s in SOURCES})
    return pinned, "per_seed" if source == "split" else pin
