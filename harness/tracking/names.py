"""The names of what the harness writes into MLflow and reads back: per-epoch metrics, the tags
on an experiment and on a parent, and the artifact paths of a seed run. The writers (the store,
a finished run's record, model logging) and the readers (readback, the report) import them from
here, so a name is spelt once."""

from __future__ import annotations

# logged per epoch (step = epoch)
EPOCH_METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "gap_acc",
    "epoch_seconds",
)

# On the MLflow experiment: what the last `run` used (harness/tracking/experiment_tags.py reads and writes them).
REPORT_PARENTS_TAG = "harness.report_parents"  # the parents of the last `run`: preferred when a variant has several
DESIGN_TAG = "harness.design"  # the last `run`'s design, as JSON: {"kind": ..., "factors": [...]}
ANALYSIS_TAG = "harness.analysis"  # the last `run`'s [analysis] settings, as JSON: {"margin": ..., "test": ...}
SEQUENTIAL_TAG = "harness.sequential"  # the last `run`'s seeds on demand, as JSON ('' for fixed seeds)
SEQUENTIAL_FROZEN_TAG = "harness.sequential_design"  # seeds on demand: the design as round 1 started it, as JSON
SEQUENTIAL_CHANGES_TAG = "harness.sequential_changes"  # its settings changed later with --redesign, as JSON (a list)
VERDICT_TAG = "harness.verdict"  # on a parent: its verdict against the baseline in the last report
ERROR_TAG = "harness.error"  # on a seed run: why it FAILED or was KILLED ('' once it resumes)
# on a seed run: what its numbers cannot show (resumed on another device type: engine.device_note)
NOTE_TAG = "harness.note"

# MLflow's own: an experiment's kind (MLflow 3's UI opens a model-development experiment on its runs table,
# not the GenAI traces overview) and a run's description (a parent's: its verdict line)
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"

# On runs: what every run of a command carries (provenance.run_tags), what names a parent or a seed run, and how it trained.
EXPERIMENT_TAG, BASELINE_TAG, COMMAND_TAG = "harness.experiment", "harness.baseline", "harness.command"
DATASET_TAG, SPLIT_TAG, CONFIG_HASH_TAG = "harness.dataset", "harness.split_fingerprint", "harness.config_hash"
COMMIT_TAG, DEVICE_TAG = "harness.git_commit", "harness.device"
# + a package; + a determinism setting (provenance.determinism)
VERSION_PREFIX, ENV_PREFIX = (
    "harness.version.",
    "harness.env.",
)
# role: variant (a parent), seed, replaced, study, trial
VARIANT_TAG, SEED_TAG, ROLE_TAG = (
    "harness.variant",
    "harness.seed",
    "harness.role",
)
# what a later command finds a parent and a seed run by
VARIANT_KEY_TAG, RUN_KEY_TAG = (
    "harness.variant_key",
    "harness.run_key",
)
# on a seed run: what its variant changes (as `list` prints it) and its hypothesis, for the report's Variants table
CHANGES_TAG, HYPOTHESIS_TAG = "harness.changes", "harness.hypothesis"
REPLACED_BY_TAG = "harness.replaced_by"  # on a replaced seed run: the run that replaced it
# a seed run trained in a fused group: its size and its id
FUSED_TAG, FUSED_GROUP_TAG = (
    "harness.fused",
    "harness.fused_group",
)
# On tuning runs (harness/tuning): the study, its settings, each trial and its state.
STUDY_TAG, STORAGE_TAG, PRUNER_TAG = "harness.study", "harness.storage", "harness.pruner"
TRIAL_TAG, TRIAL_STATE_TAG = "harness.trial", "harness.trial_state"
WORKER_ATTR = "harness.worker"  # not a tag: the Optuna user attribute naming the process that runs a trial
# On a registered model version (`promote`).
SELECTED_VAL_ACC_TAG, PAIRED_DELTA_TAG = "harness.selected_val_acc", "harness.paired_delta_test_acc"

# A finished seed run's artifacts.
CONFIG = "config.toml"  # the resolved configuration
CONFUSION = "confusion_matrix.csv"  # the test-set confusion matrix, with class names
PER_CLASS = "per_class.csv"  # precision, recall and F1 per class
# the run's ledger, per test image: the label, the selected weights' and the last epoch's predicted
# class, the selected weights' class probabilities (float16; runs before the ledger have none)
PREDICTIONS = "predictions.npz"
WEIGHTS = "model.pt"  # the last epoch's state dict (None when it is the selected one, the Logged Model's)
MODEL = "model"  # the folder of the selected epoch's MLflow PyTorch model
CURVES_PLOT, CONFUSION_PLOT = "learning_curves.png", "confusion_matrix.png"


def epoch_metrics(s) -> dict[str, float]:
    """The per-epoch metrics of an engine.EpochStats, named as EPOCH_METRICS."""
    values = {
        "train_loss": s.train_loss,
        "train_acc": s.train_acc,
        "val_loss": s.val_loss,
        "val_acc": s.val_acc,
        "gap_acc": s.train_acc - s.val_acc,
        "epoch_seconds": s.seconds,
    }
    return {k: values[k] for k in EPOCH_METRICS}


# a seed run that `run --rerun` replaced but kept, because a registered model version points at it
REPLACED_ROLE = "replaced"


def seed_of(tags: dict[str, str]) -> int | None:
    """The seed a run records (tag harness.seed), or None when it has none the harness wrote."""
    text = tags.get(SEED_TAG, "")
    return int(text) if text.isdigit() else None


def counts_as_seed_run(tags: dict[str, str]) -> bool:
    """Whether a run under a variant's parent is one of its seed runs: it names its seed and was not replaced."""
    return tags.get(ROLE_TAG, "seed") == "seed" and seed_of(tags) is not None
