"""A fused step's kernel-launching ops do not grow with K (harness/training/launches.py counts them
below autograd; benchmarks/launches.py prints the same JSON)."""

from __future__ import annotations

import torch

from harness.cli import bench_launches
from harness.training import launches


def test_a_fused_step_launches_at_most_1_3_times_a_separate_step_whatever_k():
    torch.set_num_threads(1)
    c = bench_launches.counts()
    assert c["fused_8"] <= 1.3 * c["separate"], c
    assert c["fused_8_mixed"] <= 1.3 * c["separate"], c  # own dropout p, learning rate and weight decay per member
    assert c["fused_2"] == c["fused_8"], c  # nothing in the step is a loop over members
    # no host read a separate step does not make
    assert all(reads <= c["syncs"]["separate"] for reads in c["syncs"].values()), c


def test_the_counter_sees_a_loop_over_members():
    """The counter is not blind: K separate matmuls count K times, views and allocations not at all."""
    x = torch.ones(4, 3)
    with launches.Counting() as c:
        for _ in range(5):
            x.mm(torch.ones(3, 2))
        x.view(12).t()
        torch.empty(3)
    assert c.ops == 5 + 5 and c.names["mm"] == 5  # five fill_s of ones(), five mm; the view, t and empty are free
