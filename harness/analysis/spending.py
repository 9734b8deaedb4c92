"""The boundaries of the seeds-on-demand rule: Lan–DeMets O'Brien–Fleming-type error spending,
and the critical values of the paired t statistic at each look from its exact null distribution
under normal differences (PATHS simulated paths from a fixed seed), kept in the user cache so a
later command reads what an earlier one simulated. harness/analysis/sequential.py decides with them."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
from scipy import special, stats

from harness.base.files import atomic_write, cache_dir


def spend(level: float, fraction: float) -> float:
    """The O'Brien–Fleming-type error spent by information fraction τ: 2 − 2Φ(z_{1−level/2} / √τ)."""
    return float(2 * stats.norm.sf(stats.norm.isf(level / 2) / math.sqrt(fraction)))


PATHS = 1_000_000  # simulated null paths of the t statistic per design
PATH_SEED = 20131  # fixed: the same looks give the same boundaries on every machine and every rebuild
CACHE_VERSION = 2  # part of every cached key: bump it when the simulation changes


@functools.lru_cache(maxsize=2)
def _null_paths(ns: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The t statistic of PATHS null paths at looks with `ns` pairs (float32, one array per look;
    empty where n < 2). Under normal differences with no effect the path does not depend on the
    spread, so standard normal pairs give it; the draws go look by look, so the first k looks of
    a longer design are the paths of its first k looks."""
    rng = np.random.default_rng(PATH_SEED)
    total, squares = np.zeros(PATHS), np.zeros(PATHS)
    out, last_n = [], 0
    for n in ns:
        block = n - last_n
        b = rng.standard_normal(PATHS) * math.sqrt(block)  # the new pairs' sum, and their scatter about their own mean
        within = rng.chisquare(block - 1, PATHS) if block > 1 else 0.0
        total, squares, last_n = total + b, squares + within + b * b / block, n
        if n < 2:
            out.append(np.empty(0, dtype=np.float32))
            continue
        sd = np.sqrt(np.maximum(squares - total * total / n, 0.0) / (n - 1))
        out.append((total / np.maximum(sd, 1e-300) / math.sqrt(n)).astype(np.float32))
    return tuple(out)


def _simulate(ns: tuple[int, ...], fractions: tuple[float, ...], level: float, two_sided: bool) -> tuple[float, ...]:
    running = np.ones(PATHS, dtype=bool)
    out = []
    for n, fraction, t in zip(ns, fractions, _null_paths(ns)):
        if n < 2:
            out.append(math.inf)
            continue
        stat = np.abs(t) if two_sided else t
        due = round(spend(level, fraction) * PATHS) - int((~running).sum())  # paths this look may stop
        alive = stat[running]
        if due <= 0 or not len(alive):
            out.append(math.inf)
            continue
        c = float(np.partition(alive, len(alive) - due)[len(alive) - due]) if due < len(alive) else float(alive.min())
        out.append(c)
        running &= stat < c
    return tuple(out)


def _cache_file():
    return cache_dir() / f"sequential-boundaries-v{CACHE_VERSION}.json"


def _cached(key: str) -> list[float] | None:
    try:
        value = json.loads(_cache_file().read_text()).get(key)
        return [float(x) for x in value] if isinstance(value, list) else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _keep(key: str, value: tuple[float, ...]) -> None:
    """Add one design's boundaries to the cache file (best effort: an unwritable cache only costs time)."""
    try:
        try:
            known = json.loads(_cache_file().read_text())
            known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            known = {}
        known[key] = list(value)
        atomic_write(_cache_file(), json.dumps(known, sort_keys=True))
    except OSError:
        pass


@functools.lru_cache(maxsize=4096)
def boundaries(ns: tuple[int, ...], fractions: tuple[float, ...], level: float, two_sided: bool) -> tuple[float, ...]:
    """Critical values of the paired t statistic at looks with `ns` pairs at information
    `fractions`, spending `level` by `spend`: a look rejects
    when |t| (two-sided) or t (one-sided) reaches its value; inf where nothing is left to spend.

    Under normal differences with no effect, the path of t statistics over the looks does not
    depend on the unknown spread, so PATHS simulated null paths give the boundaries exactly up to
    Monte-Carlo error: each is the order statistic of the paths still running that spends the
    error due by that look. Kept in the user cache (harness/base/files.cache_dir), so a command
    reads what an earlier one simulated; the first k boundaries depend on the first k looks only."""
    key = json.dumps([list(ns), list(fractions), level, two_sided, PATHS, PATH_SEED])
    found = _cached(key)
    if found is not None and len(found) == len(ns):
        return tuple(found)
    value = _simulate(ns, fractions, level, two_sided)
    _keep(key, value)
    return value


def p_value(stat: float, n: int, two_sided: bool) -> float:
    """The fixed-sample t-test p of a look's statistic (for display; the boundaries decide)."""
    tail = float(special.stdtr(n - 1, -abs(stat) if two_sided else -stat))  # scipy's t cdf without stats.t's overhead
    return min(1.0, 2 * tail) if two_sided else tail
