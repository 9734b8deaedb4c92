"""How verdicts are decided, as an experiment states it: `[analysis]` (margin, deciding test, α)
and seeds on demand (`seeds = "auto"` with `min_seeds`, `max_seeds`). harness/analysis computes
with these; they live here so the configuration can hold them without importing the statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ALPHA = 0.05
Test = Literal["t", "permutation"]  # the paired t-test; the exact sign-flip test
TESTS = get_args(Test)


@dataclass(frozen=True)
class Analysis:
    """`[analysis]` in an experiment file: how comparisons are decided."""

    margin: float = 0.5  # points: differences within ±margin count as equivalent (TOST)
    test: Test = "t"  # which test decides the verdicts
    alpha: float = ALPHA


# the seeds-on-demand rule a new design records at its round 1 (harness/analysis/sequential.py): 2,
# one error budget (each family α/2 with two or more variants); 1, each family α
SEQUENTIAL_RULE = 2


@dataclass(frozen=True)
class Sequential:
    """`seeds = "auto"` with `min_seeds` and `max_seeds` in an experiment file (`--seeds auto --max-seeds N`)."""

    min_seeds: int = 3
    max_seeds: int = 20

    def rounds(self) -> int:
        return self.max_seeds - self.min_seeds + 1
