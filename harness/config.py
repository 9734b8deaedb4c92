"""Configuration: the experiment file and `--set` overrides, checked value by value, resolved into
one `RunSpec` per (variant, seed).

What a run trains with is `engine.TrainSettings` (the engine's own type); how it executes is
`engine.Runtime`; where things go is `Paths`. An experiment file keeps its familiar layout: the
`[train]` table holds both training and runtime settings, and `[data] dir` is a path. Every value
is checked against the table `CHECKS` below, so a bad value fails with one line naming the field,
the value and what is allowed, before any run or file is created.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tomli_w

from harness import datasets
from harness.engine import Runtime, TrainSettings
from harness.errors import UsageError

DEFAULT_BASE_SEED = 2021  # the tutorial's seed; `--seeds N` counts up from here
MAX_SEED_COUNT = 32  # a lone `--seeds N` up to this is a count, above it a seed
DEFAULT_EXPERIMENT = "default"  # experiments/default.toml, used when no --experiment is given


def _is_cuda_index(v: str) -> bool:
    return v.startswith("cuda:") and v[5:].isdigit()


def _is_name(v: str) -> bool:
    return bool(v) and all(c.isalnum() or c in "-_." for c in v)


# Every setting a user can write: what is allowed (said in errors) and the check of its value.
CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": ("a non-empty name of letters, digits, '-', '_' or '.'", _is_name),
    "baseline": ("the name of a registered variant", bool),
    "train.epochs": ("an integer from 1 to 100000", lambda v: 1 <= v <= 100_000),
    "train.batch_size": ("an integer from 1 to 65536", lambda v: 1 <= v <= 65_536),
    "train.eval_batch_size": ("an integer from 1 to 65536", lambda v: 1 <= v <= 65_536),
    "train.lr": ("a finite number > 0", lambda v: v > 0),
    "train.weight_decay": ("a finite number >= 0", lambda v: v >= 0),
    "train.shuffle": ("true (seeded reshuffle each epoch) or false (the tutorial's fixed order)", lambda v: True),
    "train.select": ("one of val_acc, val_loss, last", lambda v: v in ("val_acc", "val_loss", "last")),
    "train.precision": ("one of fp32 (the tutorial's), bf16 (autocast)", lambda v: v in ("fp32", "bf16")),
    "train.device": ("one of auto, cpu, cuda, cuda:N", lambda v: v in ("auto", "cpu", "cuda") or _is_cuda_index(v)),
    "train.threads": ("an integer >= 0 (0: torch's default)", lambda v: v >= 0),
    "train.memory_format": ("one of auto (channels_last on a CPU, contiguous on CUDA), contiguous, channels_last",
                            lambda v: v in ("auto", "contiguous", "channels_last")),
    "train.compile": ("one of off, default, reduce-overhead (CUDA graphs), max-autotune",
                      lambda v: v in ("off", "default", "reduce-overhead", "max-autotune")),
    "train.determinism": ("one of cudnn (the tutorial's flags), strict (deterministic algorithms), fast (cuDNN autotuning)",
                          lambda v: v in ("cudnn", "strict", "fast")),
    "data.dataset": (f"one of {', '.join(datasets.names())}", lambda v: v in datasets.names()),
    "data.split": ("one of prefix, stratified", lambda v: v in ("prefix", "stratified")),
    "data.train_ratio": ("a number strictly between 0 and 1", lambda v: 0 < v < 1),
    "data.split_seed": ("an integer >= 0", lambda v: v >= 0),
    "data.dir": ("a directory path ('' means $HARNESS_DATA_DIR, else ./data)", lambda v: True),
    "tracking_uri": ("'' (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db), sqlite:///PATH, http(s)://HOST", lambda v: True),
    "reports_dir": ("a directory path", bool),
    "checkpoint_dir": ("a directory path", bool),
}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"  # a name in harness/datasets.py
    split: str = "stratified"  # prefix (the tutorial's) | stratified
    train_ratio: float = 0.8  # of the training set; the rest is validation
    split_seed: int = 0  # seeds the split only, never training


@dataclass(frozen=True)
class Paths:
    """Where things are read from and written to: never part of what a run trains."""

    tracking_uri: str = ""
    reports_dir: str = "reports"
    checkpoint_dir: str = "checkpoints"  # per-epoch checkpoints and run claims
    data_dir: str = ""  # written `[data] dir` in a file


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    variants: tuple[str, ...] = ("baseline",)
    baseline: str = "baseline"  # the reference of every comparison
    seeds: tuple[int, ...] = (DEFAULT_BASE_SEED,)
    train: TrainSettings = field(default_factory=TrainSettings)
    data: DataConfig = field(default_factory=DataConfig)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-variant overrides
    runtime: Runtime = field(default_factory=Runtime)
    paths: Paths = field(default_factory=Paths)
    search: dict[str, dict[str, Any]] = field(default_factory=dict)  # `[search.*]` as written; harness/search.py reads it

    @property
    def reports_folder(self) -> Path:
        return Path(self.paths.reports_dir) / self.name

    @property
    def checkpoint_folder(self) -> Path:
        return Path(self.paths.checkpoint_dir) / self.name

    def trained(self) -> dict[str, Any]:
        """What decides the numbers (not how they are computed, nor where they go)."""
        return {"name": self.name, "variants": list(self.variants), "baseline": self.baseline, "seeds": list(self.seeds),
                "train": dataclasses.asdict(self.train), "data": dataclasses.asdict(self.data), "params": self.params}


@dataclass(frozen=True)
class RunSpec:
    """Everything one (variant, seed) run trains with, fully resolved."""

    experiment: str
    variant: str
    seed: int
    train: TrainSettings
    model_params: dict[str, Any]

    def flat(self) -> dict[str, Any]:
        out = {"experiment": self.experiment, "variant": self.variant, "seed": self.seed}
        out.update({f"train.{k}": v for k, v in dataclasses.asdict(self.train).items()})
        out.update({f"model.{k}": v for k, v in sorted(self.model_params.items())})
        return out

    def variant_key(self, dataset: str, split: str) -> str:
        """The one place that says what identifies a variant's configuration: the experiment, the
        variant, every training setting (a setting added later is left out at its neutral value,
        so the keys of runs made before it existed stay valid), the model parameters, the dataset
        (`name:content hash`) and the split's fingerprint. Not the seed, and nothing of `Runtime`."""
        payload = {"experiment": self.experiment, "variant": self.variant}
        for f in dataclasses.fields(self.train):
            value = getattr(self.train, f.name)
            if not (f.metadata.get("neutral") and value == f.default):
                payload[f"train.{f.name}"] = value
        payload.update({f"model.{k}": v for k, v in self.model_params.items()})
        payload.update({"data": dataset, "split": split})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def key(self, dataset: str, split: str) -> str:
        """Identifies one run: its variant's key and the seed."""
        return f"{self.variant_key(dataset, split)}-{self.seed}"


# ---------------------------------------------------------------- checking values


def check_value(where: str, value: Any, kind: type) -> Any:
    """Type-check one value; returns it converted (int -> float where a float is expected)."""
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
    elif kind is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - every setting's type is listed above
        raise TypeError(kind)
    if not ok:
        raise UsageError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _checked(section: str, name: str, value: Any, kind: type, where: str = "") -> Any:
    key = f"{section}.{name}" if section else name
    shown = where or key
    value = check_value(shown, value, kind)
    allowed, ok = CHECKS[key]
    if not ok(value):
        raise UsageError(f"{shown}: {value!r} is not allowed; expected {allowed}")
    return value


def _build(cls: type, table: dict[str, Any], section: str, where: str = "") -> Any:
    """A `cls` (TrainSettings, Runtime, DataConfig, Paths) from a table, every value checked."""
    kinds = typing.get_type_hints(cls)
    values = {}
    for name, value in table.items():
        shown = f"{where}.{name}" if where else ""
        values[name] = _checked(section, name, value, kinds[name], shown)
    return cls(**values)


RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(Runtime) if f.name != "progress_every")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSettings))


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
    return value


def _split_train(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`[train]` holds training and runtime settings: separate them, refusing unknown ones."""
    table = _table(table, "train")
    unknown = sorted(set(table) - set(TRAIN_FIELDS) - set(RUNTIME_FIELDS))
    if unknown:
        raise UsageError(f"train.{unknown[0]}: unknown setting; allowed: {', '.join(sorted(TRAIN_FIELDS + RUNTIME_FIELDS))}")
    return ({k: v for k, v in table.items() if k in TRAIN_FIELDS}, {k: v for k, v in table.items() if k in RUNTIME_FIELDS})


def train_settings(table: dict[str, Any], where: str = "train") -> tuple[TrainSettings, Runtime]:
    """Training and runtime settings from a table of train.* values, checked like the experiment file's."""
    train, runtime = _split_train(table)
    return _build(TrainSettings, train, "train", where), _build(Runtime, runtime, "train", where)


def parse_seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """A list of distinct seeds, or a count N meaning N seeds counting up from 2021."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEED_COUNT:
            raise UsageError(f"{where}: a seed count must be from 1 to {MAX_SEED_COUNT}, got {value}")
        return tuple(range(DEFAULT_BASE_SEED, DEFAULT_BASE_SEED + value))
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where}: expected a non-empty list of seeds or a count, got {value!r}")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            raise UsageError(f"{where}: seed {s!r} is not allowed; expected integers from 0 to 2**32-1")
    dup = sorted({s for s in value if value.count(s) > 1})
    if dup:
        raise UsageError(f"{where}: seed {dup[0]} is listed twice; seeds must be distinct")
    return tuple(value)


def parse_variant_list(text: str, where: str = "--variants") -> tuple[str, ...]:
    names = [p.strip() for p in text.split(",")]
    if not any(names):
        raise UsageError(f"{where}: the variant list is empty; name at least one variant")
    return tuple(names)


TOP_LEVEL = ("name", "variants", "baseline", "seeds", "train", "data", "params", "search", "tracking_uri", "reports_dir", "checkpoint_dir")


def from_table(table: dict[str, Any]) -> ExperimentConfig:
    """Check a raw settings table (from TOML plus overrides) and make an ExperimentConfig of it."""
    table = dict(table)
    unknown = sorted(set(table) - set(TOP_LEVEL))
    if unknown:
        raise UsageError(f"{unknown[0]}: unknown setting; allowed: {', '.join(sorted(TOP_LEVEL))}")
    train, runtime = train_settings(table.pop("train", {}))
    data_table = dict(_table(table.pop("data", {}), "data"))
    data_dir = data_table.pop("dir", "")
    unknown = sorted(set(data_table) - {f.name for f in dataclasses.fields(DataConfig)})
    if unknown:
        raise UsageError(f"data.{unknown[0]}: unknown setting; allowed: dir, {', '.join(f.name for f in dataclasses.fields(DataConfig))}")
    data = _build(DataConfig, data_table, "data")
    paths = {"tracking_uri": table.pop("tracking_uri", ""), "reports_dir": table.pop("reports_dir", "reports"),
             "checkpoint_dir": table.pop("checkpoint_dir", "checkpoints")}
    paths = Paths(**{k: _checked("", k, v, str) for k, v in paths.items()}, data_dir=_checked("data", "dir", data_dir, str))
    variants = table.pop("variants", list(ExperimentConfig.variants))
    if isinstance(variants, str):
        variants = list(parse_variant_list(variants, "variants"))
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise UsageError(f"variants: expected a list of variant names, got {variants!r}")
    seeds = parse_seeds(table.pop("seeds", list(ExperimentConfig.seeds)))
    params = table.pop("params", {})
    search = table.pop("search", {})
    if not isinstance(search, dict):
        raise UsageError(f"search: expected a table of per-variant search spaces, got {search!r}")
    top = {k: _checked("", k, v, str) for k, v in table.items()}
    cfg = ExperimentConfig(**top, variants=tuple(variants), seeds=seeds, train=train, data=data, params=params,
                           runtime=runtime, paths=paths, search=search)
    validate_variants(cfg)
    return cfg


def validate_variants(cfg: ExperimentConfig) -> None:
    import variants as registry

    if not cfg.variants:
        raise UsageError("variants: the variant list is empty; name at least one variant")
    for name in cfg.variants:
        if name not in registry.names():
            raise UsageError(f"variants: {registry.unknown_message(name)}")
        if cfg.variants.count(name) > 1:
            raise UsageError(f"variants: {name!r} is listed twice; each variant runs once per seed")
    if cfg.baseline not in registry.names():
        raise UsageError(f"baseline: {registry.unknown_message(cfg.baseline)}")
    if not isinstance(cfg.params, dict):
        raise UsageError(f"params: expected a table of per-variant settings, got {cfg.params!r}")
    for name, overrides in cfg.params.items():
        if name not in registry.names():
            raise UsageError(f"params.{name}: {registry.unknown_message(name)}")
        if not isinstance(overrides, dict):
            raise UsageError(f"params.{name}: expected a table of settings, got {overrides!r}")
    for name in cfg.variants:
        check_builds(cfg, resolve(cfg, name, cfg.seeds[0]), f"params.{name}")


def check_builds(cfg: ExperimentConfig, spec: RunSpec, where: str) -> None:
    """The variant's builder accepts its parameters for the experiment's dataset."""
    import variants as registry

    try:
        dataset = datasets.get(cfg.data.dataset)
        registry.get(spec.variant).build(dataset.image_shape, dataset.num_classes, **spec.model_params)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where}: {e}") from None


def resolve(cfg: ExperimentConfig, variant: str, seed: int) -> RunSpec:
    """Merge, in order: the experiment's training settings, the variant's own overrides, and the
    experiment's `[params.<variant>]` table (model parameters and training settings)."""
    import variants as registry

    v = registry.get(variant)
    model_params = dict(v.params)
    train_over = dict(v.train)
    for key, value in cfg.params.get(variant, {}).items():
        where = f"params.{variant}.{key}"
        if key in model_params:
            model_params[key] = check_value(where, value, type(model_params[key]))
        elif key in TRAIN_FIELDS:
            train_over[key] = value
        else:
            allowed = sorted(model_params) + sorted(TRAIN_FIELDS)
            raise UsageError(f"{where}: unknown setting for variant {variant!r}; allowed: {', '.join(allowed)}")
    train = dataclasses.replace(cfg.train, **{k: _checked("train", k, value, type(getattr(cfg.train, k)), f"params.{variant}.{k}")
                                              for k, value in train_over.items()})
    return RunSpec(cfg.name, variant, seed, train, model_params)


def config_hash(cfg: ExperimentConfig) -> str:
    """A short stable hash of what decides the numbers (not how they are computed, nor where they go)."""
    return hashlib.sha256(json.dumps(cfg.trained(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def to_toml(cfg: ExperimentConfig, extra: dict[str, Any] | None = None) -> str:
    """The resolved configuration as an experiment file (logged with every run); `extra` tables
    are added at the end."""
    train = {**dataclasses.asdict(cfg.train), **{k: getattr(cfg.runtime, k) for k in RUNTIME_FIELDS}}
    table = {"name": cfg.name, "variants": list(cfg.variants), "baseline": cfg.baseline, "seeds": list(cfg.seeds),
             "tracking_uri": cfg.paths.tracking_uri, "reports_dir": cfg.paths.reports_dir, "checkpoint_dir": cfg.paths.checkpoint_dir,
             "train": train, "data": {"dir": cfg.paths.data_dir, **dataclasses.asdict(cfg.data)},
             "params": cfg.params, "search": cfg.search, **(extra or {})}
    return tomli_w.dumps(table)
