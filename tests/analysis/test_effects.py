"""Factorial effects and interactions (harness/analysis/effects.py; the report's wording in
harness/report/effects_section.py): an interaction is never said to raise accuracy, a main effect
that depends on another factor comes with its simple effects, and an interaction is equivalent only
when its simple effects differ by less than the margin (the contrast's TOST at half the margin)."""

from __future__ import annotations

import pytest

from harness.analysis import effects, stats
from harness.report import effects_section
from harness.settings.designs import Design


def test_an_interaction_is_not_said_to_raise_accuracy_and_a_main_effect_comes_with_its_simple_effects(tmp_path):
    """a and b each cost 100 images alone and nothing together."""
    images = 10_000
    noise = {s: [0, 3, -2, 1, -1, 2][i] for i, s in enumerate(range(6))}
    counts = {
        "baseline": {s: (6000 + noise[s], images) for s in noise},
        "a": {s: (5900 - noise[s], images) for s in noise},
        "b": {s: (5900 + 2 * noise[s], images) for s in noise},
        "a+b": {s: (6000 - 2 * noise[s], images) for s in noise},
    }
    design = Design("factorial", ("a", "b"))
    lines = "\n".join(effects_section.section(design, counts, tmp_path))
    row = next(line for line in lines.splitlines() if line.startswith("| a × b |"))
    assert "effects do not add: each does more with the other" in row and "raises accuracy" not in row
    main = next(line for line in lines.splitlines() if line.startswith("| a | main |"))
    assert "depends on `b`: see the simple effects below" in main
    assert "| a × b | a without b | 6 | -1.01 |" in lines and "| a × b | a with b | 6 | +0.98 |" in lines
    simple = effects.simple_effects(
        design, {v: {s: k for s, (k, _) in c.items()} for v, c in counts.items()}, "a", "b", 100 / images
    )
    assert simple["b without a"][0] == pytest.approx(-1.0)


def test_an_interaction_is_equivalent_only_when_its_simple_effects_differ_by_less_than_the_margin(tmp_path):
    """a's simple effects are −0.27 without b and +0.27 with b (0.54 apart), so the interaction
    contrast is +0.27. At the margin 0.5 on the contrast it would read "effects add (within the
    margin)"; on the simple-effect scale (the contrast's TOST at 0.25) it is not equivalent, and the
    simple effects are shown."""
    images = 10_000
    noise = dict(enumerate([0, 1, -1, 2, -2, 1, 0, -1, 1, 0, 1, -2]))  # sums to 0
    counts = {
        "baseline": {s: (6000 + noise[s], images) for s in noise},
        "a": {s: (5973 + noise[s], images) for s in noise},
        "b": {s: (6000 - noise[s], images) for s in noise},
        "a+b": {s: (6027 + noise[s], images) for s in noise},
    }
    design = Design("factorial", ("a", "b"))
    found = {e.name: e for e in effects.analyse(design, counts)}
    interaction = found["a × b"].test
    assert interaction.diff_mean == pytest.approx(0.27) and interaction.margin == 0.25
    assert interaction.verdict != "equivalent" and interaction.tost_holm > 0.05
    before = stats.differences(found["a × b"].per_seed, stats.Analysis(margin=0.5))  # the TOST at 0.5 on the contrast
    assert before.tost_t_p < 1e-6
    lines = "\n".join(effects_section.section(design, counts, tmp_path))
    row = next(line for line in lines.splitlines() if line.startswith("| a × b |"))
    assert "effects add" not in row
    assert "| a × b | a without b | 12 | -0.27 |" in lines and "| a × b | a with b | 12 | +0.27 |" in lines
    assert "its contrast, half that difference, within ±0.25" in lines
