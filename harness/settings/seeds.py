"""The runs' seeds and their sources of randomness: `seeds = N`, a list, "auto" (seeds on demand,
with min_seeds and max_seeds), or a `[seeds]` table with `runs` and a seed per source. One rule
for the experiment file, `--seeds` and `--set seeds...`."""

from __future__ import annotations

from typing import Any

from harness.base.errors import UsageError
from harness.settings import checks
from harness.settings.analysis import Sequential
from harness.training.settings import SOURCES, Sources

DEFAULT_BASE_SEED = 2021  # the tutorial's seed; `--seeds N` counts up from here
MAX_SEED_COUNT = 1000  # `seeds = N` / `--seeds N` is always a count of seeds; a list names them


def parse_seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """One rule for the file, `--set seeds=` and `--seeds`: an integer N is a count (N seeds counting
    up from 2021), a list names distinct seeds."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEED_COUNT:
            raise UsageError(
                f"{where}: a seed count must be from 1 to {MAX_SEED_COUNT}, got {value}; name seeds as a list, e.g. [{value}] (--seeds {value},)"
            )
        return tuple(range(DEFAULT_BASE_SEED, DEFAULT_BASE_SEED + value))
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where}: expected a non-empty list of seeds or a count, got {value!r}")
    if len(value) > MAX_SEED_COUNT:
        raise UsageError(
            f"{where}: a list of {len(value)} seeds is not allowed; at most {MAX_SEED_COUNT} seeds, as for a count"
        )
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            raise UsageError(f"{where}: seed {s!r} is not allowed; expected integers from 0 to 2**32-1")
    dup = sorted({s for s in value if value.count(s) > 1})
    if dup:
        raise UsageError(f"{where}: seed {dup[0]} is listed twice; seeds must be distinct")
    return tuple(value)


SEED_KEYS = ("runs", *SOURCES, "split")


def seed_sources(value: Any) -> tuple[Any, Sources, int | str | None]:
    """`seeds` as written: a count, a list or "auto" (the runs' seeds), or a `[seeds]` table with
    `runs` and a seed per source: "run" (follow the run's seed, the default) or an integer that
    pins it. Returns (the runs' seeds as written, the training sources, the split's seed as
    `data.split_seed` takes it, None when not given: "run" is "per_seed")."""
    if not isinstance(value, dict):
        return value, Sources(), None
    unknown = sorted(set(value) - set(SEED_KEYS))
    if unknown:
        raise UsageError(f"seeds.{unknown[0]}: unknown setting; allowed: {', '.join(SEED_KEYS)}")
    pinned: dict[str, int | None] = {}
    for key in (*SOURCES, "split"):
        v = value.get(key, "run")
        if v != "run" and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32):
            raise UsageError(
                f'seeds.{key}: {v!r} is not allowed; expected "run" (follow each run\'s seed) or a seed from 0 to 2**32-1'
            )
        pinned[key] = None if v == "run" else v
    split = pinned.pop("split")
    split_seed = None if "split" not in value else ("per_seed" if split is None else split)
    return value.get("runs", [DEFAULT_BASE_SEED]), Sources(**pinned), split_seed


def seed_plan(value: Any, min_seeds: Any, max_seeds: Any) -> tuple[tuple[int, ...], Sequential | None]:
    """`seeds` with `min_seeds`/`max_seeds`: fixed seeds (a count or a list), or "auto" for seeds on
    demand, whose candidates are max_seeds seeds counting up from 2021."""
    if value != "auto":
        given = next((k for k, v in (("min_seeds", min_seeds), ("max_seeds", max_seeds)) if v is not None), None)
        if given:
            raise UsageError(f'{given}: only with seeds = "auto" (--seeds auto); remove it or use seeds on demand')
        if isinstance(value, list) and "auto" in value:
            raise UsageError(
                'seeds: "auto" stands alone (seeds = "auto", --seeds auto); it cannot be part of a list of seeds'
            )
        return parse_seeds(value), None
    low = Sequential.min_seeds if min_seeds is None else checks.check_value("min_seeds", min_seeds, int)
    high = Sequential.max_seeds if max_seeds is None else checks.check_value("max_seeds", max_seeds, int)
    if not 2 <= low <= MAX_SEED_COUNT:
        raise UsageError(
            f"min_seeds: {low} is not allowed; expected an integer from 2 to {MAX_SEED_COUNT} (the seeds of the first round)"
        )
    if not low <= high <= MAX_SEED_COUNT:
        raise UsageError(
            f"max_seeds: {high} is not allowed; expected an integer from min_seeds ({low}) to {MAX_SEED_COUNT}"
        )
    return tuple(range(DEFAULT_BASE_SEED, DEFAULT_BASE_SEED + high)), Sequential(low, high)
