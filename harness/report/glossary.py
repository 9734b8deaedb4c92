"""The report's glossary: every definition once, at the end, each with an anchor that the tables
and sections link to (`link`). Which entries a report carries depends on what it shows: the
effects of a design, seeds on demand."""

from __future__ import annotations

from harness.analysis import sample_size, sequential, signflip, stats
from harness.base.escaping import code
from harness.settings.designs import CELLS, Design

PREFIX = "g-"


def link(key: str, label: str) -> str:
    """A markdown link to the glossary entry `key`."""
    return f"[{label}](#{PREFIX}{key})"


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def entries(
    analysis: stats.Analysis, m: int, sources: str, design: Design, sequential_design: tuple[int, int] | None = None
) -> list[tuple[str, str, str]]:
    """(key, term, definition) of everything this report's tables use; `m` is the number of comparable
    variants (the Holm family), `sources` what the seeds vary, `sequential_design` (the rule, the
    number of variants compared) of a seeds-on-demand design."""
    a, margin = analysis.alpha, _fmt(analysis.margin)
    out = [
        (
            "selected",
            "Test accuracy",
            "measured once per run, on the test set, with the weights of the epoch the selection rule "
            "(`train.select`) chose; a variant's value is the mean ± sample standard deviation over its seeds.",
        ),
        (
            "summary",
            "Per-variant summary",
            "n seeds; mean ± sample std; 95% confidence interval of the mean (t distribution); median; range.",
        ),
        ("gap", "Train–val gap", "train minus validation accuracy at the last epoch."),
        ("sources", "What the seeds vary", sources),
        (
            "floor",
            "Test-set floor",
            "the binomial standard deviation of one run's accuracy p over new test sets of n images, "
            "100 · √(p(1 − p)/n) points: how far an accuracy measured here can be from the accuracy on new images, whatever "
            "the seeds. The intervals of this report are over seeds on this one test set and narrow as 1/√seeds whatever the "
            "floor; a seed spread near the floor says that the seeds differ by about as much as independent per-image flips "
            "would make them (Jordan 2024).",
        ),
        (
            "delta",
            "Δ (points)",
            "the mean over seeds of the paired difference (variant minus baseline on the same seed, in points, "
            "from counts of correctly classified test images); pairs: seeds on which both finished.",
        ),
        (
            "holm",
            "Holm",
            f"The family is the {m} comparable variant(s), with one error budget for their difference and their "
            f"equivalence tests: all {2 * m} p are Holm-corrected together, each step at α over the comparisons that "
            "still have a test left (a variant's two nulls, no difference and one beyond the margin, cannot both be true: "
            "Shaffer's refinement), so the chance of any better or worse where there is no difference, or equivalent where "
            "the difference reaches the margin, is at most α. A variant that "
            "cannot be tested counts with p = 1; raw p in parentheses."
            if m
            else "no variant is comparable with the baseline here, so there is no family to correct over.",
        ),
        (
            "intervals",
            "95% CI unadjusted, simultaneous",
            f"the unadjusted 95% interval, and the simultaneous one (Bonferroni, level "
            f"1 − {a}/{max(m, 1)}), which holds for all {max(m, 1)} at once, both of the deciding test: t intervals, or where the sign-flip test "
            'decides (`[analysis] test = "permutation"`, or no spread between seeds) the shifts that test does not reject, (−∞, +∞) '
            "when its smallest p is above the level. A simultaneous interval that excludes zero therefore always comes with better "
            "or worse; the reverse can fail at Holm's later steps, and the verdict line then says so.",
        ),
        ("t", "t-test", "the paired t-test of the differences, two-sided."),
        (
            "permutation",
            "Permutation",
            f"the exact sign-flip test over all 2^n sign patterns (seeded Monte-Carlo above "
            f"{signflip.EXACT_UP_TO} pairs), with the smallest p these pairs can reach in brackets (2 / 2^k for the k non-zero differences).",
        ),
        (
            "tost",
            "TOST",
            f"the paired equivalence test against ±{margin} points (`[analysis] margin`): two one-sided tests, each at "
            "the level Holm gives it, α/k at its step. An equivalent verdict prints the interval that decided it: the "
            "deciding test's interval at confidence 1 − 2α/k, which lies inside ±margin exactly when the TOST rejects (at "
            "α/k = 0.05 the 90% interval, not the 95% one).",
        ),
        (
            "seeds-images",
            "Seeds × images",
            "a sensitivity check, not part of any verdict: the interval of Δ over new seeds *and* new test sets of this "
            "size. Seeds and test images are crossed (every seed is scored on the same images), and its variance counts "
            "each once, (MS seeds + MS images − MS residual)/(n · N) from the per-image predictions (each factor's part "
            "floored at 0), with Satterthwaite's degrees of freedom, and never narrower than the seeds' paired t interval.",
        ),
        (
            "won",
            "Seeds won",
            "on how many seeds the variant scored higher, with the Clopper–Pearson 95% interval of that rate (a tie is no win).",
        ),
        (
            "gz",
            "g_z",
            "the Hedges-corrected standardized mean difference (Δ over the sd of the differences, times the small-sample correction).",
        ),
        (
            "seeds",
            f"Seeds for ±{margin}",
            f"at Holm's strictest level α/m = {a}/{max(m, 1)}, given this spread, the pairs for "
            f"{int(sample_size.POWER * 100)}% power to show equivalence within ±{margin} (paired TOST, no true difference) where |Δ| is "
            f"within the margin, else to find a true difference of {margin} points (paired t-test); not estimable below 3 pairs.",
        ),
        (
            "verdict",
            "Verdict",
            f"decided by the {code(analysis.test)} test (`[analysis] test`): **better** / **worse** when its Holm "
            f"p < {a}; else **equivalent** when the TOST's Holm p < {a} (the difference is within ±{margin}); else **inconclusive**: "
            f"these seeds cannot tell, which is not evidence of no effect. Fewer than {stats.MIN_PAIRS} pairs give no verdict. The "
            "t-test assumes roughly normal paired differences; a verdict line warns where they look skewed or a seed is an outlier. "
            "**not comparable**: the variant does not share the baseline's epochs, selection rule, data or split, so it stays out of "
            "the family.",
        ),
    ]
    if design.kind == "factorial":
        out.append(
            (
                "effects",
                "Effect (factorial)",
                f"a 2^{len(design.factors)} factorial design over "
                f"{', '.join(f'{code(x)}' for x in design.factors)}. Main effect of a factor: mean test accuracy of the cells with "
                "it minus the cells without it; interaction A × B: half the difference between A's effect with B and A's effect "
                "without B. Each is a contrast of the cells' test accuracies computed per seed (a seed gives every cell the same "
                "split, initial weights and batch order) over the seeds on which every cell finished.",
            )
        )
    elif design.kind == "leave-one-out":
        out.append(
            (
                "effects",
                "Effect (leave-one-out)",
                f"a leave-one-out design around the full model "
                f"{code('+'.join(sorted(design.factors)))}. Contribution of a component: the full model's test accuracy minus that "
                'of the full model without it, per seed; "full − baseline" is the whole model\'s gain.',
            )
        )
    if design.kind == "variance":
        out.append(
            (
                "source-variance",
                "Variance of a source",
                "the sample variance (n − 1 degrees of freedom) of the test "
                "accuracies of the runs that vary one source of randomness over the seeds while every other source stays pinned "
                "to one seed no run varies: n independent draws of what that source alone does. Its interval is the exact "
                "chi-square interval [(n − 1)s²/χ²(1 − α/2), (n − 1)s²/χ²(α/2)], which assumes the source's effect is roughly "
                "normal (heavy tails make it too narrow). The share is of the sources' variances summed. The largest is called "
                "dominant only when the two-sided F test of the two largest variances rejects equal variances at α. The "
                "sources add up to the all-sources variance only when they act additively and independently; the ratio's "
                "interval (Satterthwaite's degrees of freedom for the sum) says whether these runs can tell.",
            )
        )
        out.append(
            (
                "per-image",
                "Per-image part",
                "(1/N²) Σᵢ p̂ᵢ(1 − p̂ᵢ) · R/(R − 1) in points², where p̂ᵢ is the share of the source's R runs that classified "
                "test image i correctly: the variance the runs' accuracy would have if each image flipped independently with "
                "its own probability (Jordan 2024). Near the source's variance, its spread is per-image noise on this test "
                "set; well below it, the source moves many images together.",
            )
        )
    if design.kind in CELLS:
        out.append(
            (
                "effect-tests",
                "Effect tests",
                "mean over seeds in points (from counts of correct test images), 95% t "
                "interval, two-sided t-test and sign-flip permutation test of the per-seed contrasts, Holm-corrected across the "
                f'design\'s effects; TOST against ±{margin} points for "no effect beyond the margin". The {code(analysis.test)} test '
                'decides (`[analysis] test`); "inconclusive" means these seeds cannot tell.',
            )
        )
    if sequential_design:
        out.append(
            (
                "rule",
                "Seeds-on-demand rule",
                f"{sequential.METHOD}; {sequential.budget(a, sequential_design[1], sequential_design[0])}, "
                f"equivalence margin ±{margin} points.",
            )
        )
        out.append(
            (
                "sequential-interval",
                "Seeds-on-demand interval",
                "for **equivalent**, the TOST's interval at the look that "
                "decided it (Δ ± its one-sided boundary × se, inside ±margin; level 1 − 2 × the equivalence family's level then); "
                "otherwise the repeated confidence interval at the last look, at the variant's Holm level then (a 3-variant "
                f"study starts at {_first_level(a, sequential_design[0])}), which holds at every round at once. The decided-by column gives the "
                "sequential statistic against its boundary. The last boundary is stricter than the fixed test's (see *What it assumes*).",
            )
        )
    return out


def _first_level(alpha: float, rule: int) -> str:
    """The first repeated interval's level of a 3-variant design under `rule`, worked out."""
    each = sequential.family_alpha(alpha, 3, rule)
    shown = "α/2/3" if each < alpha else "α/3"
    return f"1 − {shown} = {sequential.coverage(1 - each / 3)}"


def section(items: list[tuple[str, str, str]]) -> list[str]:
    lines = ["## Glossary", ""]
    lines += [f'- <a id="{PREFIX}{key}"></a>**{term}**: {text[:1].upper()}{text[1:]}' for key, term, text in items]
    return lines + [""]
