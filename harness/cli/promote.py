"""`promote`: register the model of a variant's best seed run (highest validation accuracy at its
selected epoch; never the test set) in the MLflow Model Registry, tagged with the report's verdict
and paired difference. It sits above the report because the verdict is the report's."""

from __future__ import annotations

from harness.base.errors import UsageError
from harness.report import markdown
from harness.tracking import experiment_tags, models, names, readback


def promote(uri: str, experiment: str, variant: str, name: str, again: bool = False) -> tuple:
    """Register the model of `variant`'s best seed run (highest validation accuracy at its selected
    epoch; never the test set) as a new version of the registered model `name`, tagged with the
    report's verdict and paired difference. Returns (the model version, the seed run, its tags)."""
    runs = readback.read_runs(uri, experiment)
    mine = [r for r in runs if r.variant == variant and r.status == "FINISHED"]
    if not mine:
        known = sorted({r.variant for r in runs if r.status == "FINISHED"})
        raise UsageError(
            f"--variant: {variant!r} has no finished run in experiment {experiment!r}; its variants: {', '.join(known) or 'none'}"
        )
    best = max(mine, key=lambda r: (r.metrics.get("selected_val_acc", float("-inf")), -r.seed))
    registry = models.Registry(uri)
    if not registry.has_model(best.run_id):
        raise UsageError(
            f"--variant: run {best.run_id} ({variant} seed {best.seed}) has no logged model (it was trained before runs "
            f"logged their models); train it again with `python -m harness run --rerun`"
        )
    made = [v for m, v in registry.versions_of(best.run_id) if m == name]
    if made and not again:
        raise UsageError(
            f"--name: run {best.run_id} ({variant} seed {best.seed}) is already {name} version {made[-1]}; "
            "nothing new would be registered (pass --again for another version of the same run)"
        )
    tags = readback.experiment_tags(uri, experiment)
    baseline, _, compared = markdown.analyse(
        runs, experiment_tags.design_of(tags), experiment_tags.analysis_of(tags), tags
    )
    c = compared.get(variant)
    version_tags = {
        names.EXPERIMENT_TAG: experiment,
        names.VARIANT_TAG: variant,
        names.SEED_TAG: str(best.seed),
        names.SELECTED_VAL_ACC_TAG: f"{best.metrics.get('selected_val_acc', float('nan')):.2f}",
        names.VERDICT_TAG: "reference" if variant == baseline else c.verdict if c else "not compared",
        names.BASELINE_TAG: baseline,
    }
    if c is not None and c.test is not None:
        version_tags[names.PAIRED_DELTA_TAG] = f"{c.test.diff_mean:+.2f} ({c.test.n} pairs)"
    return registry.register(best.run_id, name, version_tags), best, version_tags
