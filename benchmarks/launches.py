"""Kernel-launching ops per training step (below autograd), separate and fused, as one JSON object:

    python benchmarks/launches.py
    {"separate": n, "fused_2": n, "fused_8": n, "fused_8_mixed": n, ...}

separate: one baseline run (harness/training/engine.py); fused_K: K baseline seeds as one group
(harness/training/fused.py); fused_8_mixed: 8 members with their own dropout p, learning rate and
weight decay; fused_8_augment: 8 seeds of `augment` (its crops and flips are drawn on the CPU per
member, counted here, and launch no kernel on a GPU). `syncs` are host reads per step. How steps
are counted: harness/training/launches.py. tests/training/test_launches.py holds the goal (fused at most
1.3 × separate)."""

from __future__ import annotations

import json
import sys

from harness.cli.bench_launches import counts

if __name__ == "__main__":
    out = counts()
    json.dump(out, sys.stdout)
    print()
