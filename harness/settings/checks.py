"""The check of every setting a user can write (`CHECKS`: what is allowed, said in errors, and the
test of a value), and typed settings built from tables of checked values."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable

from harness.base.errors import UsageError
from harness.data import datasets
from harness.settings.analysis import Test
from harness.training import settings as train
from harness.training.settings import Runtime, TrainSettings


def _is_cuda_index(v: str) -> bool:
    return v.startswith("cuda:") and v[5:].isdigit()


NAME_RULE = "1 to 100 letters, digits, '-', '_' or '.', not only dots (it names folders and files)"


def _is_name(v: str) -> bool:
    return 0 < len(v) <= 100 and v.strip(".") != "" and all((c.isascii() and c.isalnum()) or c in "-_." for c in v)


def experiment_flag(name: str) -> str:
    """`--experiment NAME` as a command line takes it: a name that starts with '-' needs the '=' form."""
    return f"--experiment={name}" if name.startswith("-") else f"--experiment {name}"


Split = typing.Literal["prefix", "stratified"]  # data.split (DataConfig): the tutorial's first 80%, or per class


def choices(kind: Any, notes: dict[str, str] | None = None) -> str:
    """What a `Literal[...]` setting allows, said from its values: 'one of a (note), b'."""
    notes = notes or {}
    if not set(notes) <= set(typing.get_args(kind)):  # a note for a value the type does not have: caught at import
        raise TypeError(f"notes for {sorted(set(notes) - set(typing.get_args(kind)))}, not values of {kind}")
    return "one of " + ", ".join(f"{v} ({notes[v]})" if v in notes else str(v) for v in typing.get_args(kind))


def _in(kind: Any) -> Callable[[Any], bool]:
    return lambda v: v in typing.get_args(kind)


# Every setting a user can write: what is allowed (said in errors) and the check of its value. A
# setting typed `Literal[...]` takes both from its type (the messages' notes add what a value means).
CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": (NAME_RULE, _is_name),
    "baseline": ("the name of a registered variant", bool),
    "train.epochs": ("an integer from 1 to 100000", lambda v: 1 <= v <= 100_000),
    "train.batch_size": ("an integer from 1 to 65536", lambda v: 1 <= v <= 65_536),
    "train.eval_batch_size": ("an integer from 1 to 65536", lambda v: 1 <= v <= 65_536),
    "train.lr": ("a finite number > 0", lambda v: v > 0),
    "train.weight_decay": ("a finite number >= 0", lambda v: v >= 0),
    "train.shuffle": ("true (seeded reshuffle each epoch) or false (the tutorial's fixed order)", lambda v: True),
    "train.select": (choices(train.Select), _in(train.Select)),
    "train.last_batch": (
        choices(
            train.LastBatch,
            {
                "keep": "an epoch's last batch may be smaller, the tutorial's",
                "drop": "every step the same size, as a captured CUDA graph needs",
            },
        ),
        _in(train.LastBatch),
    ),
    "train.precision": (choices(train.Precision, {"fp32": "the tutorial's", "bf16": "autocast"}), _in(train.Precision)),
    "train.device": ("one of auto, cpu, cuda, cuda:N", lambda v: v in ("auto", "cpu", "cuda") or _is_cuda_index(v)),
    "train.threads": ("an integer >= 0 (0: torch's default)", lambda v: v >= 0),
    "train.memory_format": (
        choices(train.MemoryFormat, {"auto": "channels_last on a CPU, contiguous on CUDA"}),
        _in(train.MemoryFormat),
    ),
    "train.compile": (choices(train.Compile, {"reduce-overhead": "CUDA graphs"}), _in(train.Compile)),
    "train.determinism": (
        choices(
            train.Determinism,
            {"cudnn": "the tutorial's flags", "strict": "deterministic algorithms", "fast": "cuDNN autotuning"},
        ),
        _in(train.Determinism),
    ),
    "train.fuse": (
        "off, auto (the group size measured fastest on the device) or a number of runs from 1 to 64 per fused group",
        lambda v: v in ("off", "auto") if isinstance(v, str) else 1 <= v <= 64,
    ),
    "train.checkpoint_seconds": (
        "a number of seconds >= 0 between checkpoints (0: after every epoch; always after the last and on "
        "SIGTERM or SIGINT)",
        lambda v: v >= 0,
    ),
    "train.run_figures": (
        "true (each run's learning curves and confusion matrix as PNG artifacts in MLflow) or false",
        lambda v: True,
    ),
    "data.dataset": (
        f"one of {', '.join(datasets.names())}, or folder:PATH (one subfolder of images per class) or npz:PATH",
        datasets.allowed,
    ),
    "data.image_size": (
        "0 (images used as they are) or a size from 1 to 1024 (a folder: dataset's images resized to it)",
        lambda v: 0 <= v <= 1024,
    ),
    "data.split": (choices(Split), _in(Split)),
    "data.train_ratio": ("a number strictly between 0 and 1", lambda v: 0 < v < 1),
    "data.split_seed": (
        'an integer >= 0, or "per_seed" (each seed draws its own stratified split)',
        lambda v: v == "per_seed" if isinstance(v, str) else v >= 0,
    ),
    "analysis.margin": (
        "a number of points > 0 and < 100 (differences within ±margin count as equivalent)",
        lambda v: 0 < v < 100,
    ),
    "analysis.test": (choices(Test, {"t": "paired t-test", "permutation": "exact sign-flip test"}), _in(Test)),
    "analysis.alpha": ("a number > 0 and < 0.5", lambda v: 0 < v < 0.5),
    "data.dir": ("a directory path ('' means $HARNESS_DATA_DIR, else ./data)", lambda v: True),
    "tracking_uri": (
        "'' (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db), sqlite:///PATH, http(s)://HOST",
        lambda v: True,
    ),
    "reports_dir": ("a directory path", bool),
    "checkpoint_dir": ("a directory path", bool),
}


def check_value(where: str, value: Any, kind: Any) -> Any:
    """Type-check one value; returns it converted (int -> float where a float is expected)."""
    if isinstance(kind, types.UnionType):  # e.g. int | str: the first member that fits
        members = typing.get_args(kind)
        for member in members:
            try:
                return check_value(where, value, member)
            except UsageError:
                continue
        raise UsageError(
            f"{where}: expected {' or '.join(m.__name__ for m in members)}, got {type(value).__name__} {value!r}"
        )
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):
                raise UsageError(f"{where}: {value!r} is not finite; expected a finite number")
    # a Literal's values: checked with what they mean (CHECKS)
    elif kind is str or typing.get_origin(kind) is typing.Literal:
        ok = isinstance(value, str)
        kind = str
    else:  # pragma: no cover - every setting's type is listed above
        raise TypeError(kind)
    if not ok:
        raise UsageError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def checked(section: str, name: str, value: Any, kind: type, where: str = "") -> Any:
    key = f"{section}.{name}" if section else name
    shown = where or key
    value = check_value(shown, value, kind)
    allowed, ok = CHECKS[key]
    if not ok(value):
        raise UsageError(f"{shown}: {value!r} is not allowed; expected {allowed}")
    return value


def build(cls: type, table: dict[str, Any], section: str, where: str = "") -> Any:
    """A `cls` (TrainSettings, Runtime, DataConfig, Paths, stats.Analysis) from a table, every value checked."""
    kinds = typing.get_type_hints(cls)
    values = {}
    for name, value in table.items():
        shown = f"{where}.{name}" if where else ""
        values[name] = checked(section, name, value, kinds[name], shown)
    return cls(**values)


RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(Runtime) if f.name != "progress_every")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSettings))


def as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
    return value


def _split_train(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`[train]` holds training and runtime settings: separate them, refusing unknown ones."""
    table = as_table(table, "train")
    unknown = sorted(set(table) - set(TRAIN_FIELDS) - set(RUNTIME_FIELDS))
    if unknown:
        raise UsageError(
            f"train.{unknown[0]}: unknown setting; allowed: {', '.join(sorted(TRAIN_FIELDS + RUNTIME_FIELDS))}"
        )
    return (
        {k: v for k, v in table.items() if k in TRAIN_FIELDS},
        {k: v for k, v in table.items() if k in RUNTIME_FIELDS},
    )


def train_settings(table: dict[str, Any], where: str = "train") -> tuple[TrainSettings, Runtime]:
    """Training and runtime settings from a table of train.* values, checked like the experiment file's."""
    train, runtime = _split_train(table)
    return build(TrainSettings, train, "train", where), build(Runtime, runtime, "train", where)
