"""Configuration: typed dataclasses with their defaults (the one place for them), loading from TOML
experiment files, `--set key=value` overrides, validation, and resolution into per-run settings.

Every setting is checked for type and range here, so a bad value fails with one line naming the
field, the bad value and what is allowed, before any run or file is created.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import UsageError

DEFAULT_BASE_SEED = 2021  # the tutorial's seed; `--seeds N` counts up from here
MAX_SEED_COUNT = 32  # a lone `--seeds N` up to this is a count, above it a seed
DEFAULT_EXPERIMENT = "default"  # experiments/default.toml, used when no --experiment is given


def _setting(default: Any, allowed: str, check: Callable[[Any], bool] = lambda v: True) -> Any:
    return field(default=default, metadata={"allowed": allowed, "check": check})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _setting(100, "an integer from 1 to 100000", lambda v: 1 <= v <= 100_000)
    batch_size: int = _setting(256, "an integer from 1 to 65536", lambda v: 1 <= v <= 65_536)
    # Evaluation batch size: the tutorial's 256. On these 2-core CPUs 1024 is no faster with the
    # channels-last layout (twice as slow with the contiguous one); on a GPU a larger one can pay
    # (the numbers differ only by float rounding).
    eval_batch_size: int = _setting(256, "an integer from 1 to 65536", lambda v: 1 <= v <= 65_536)
    lr: float = _setting(1e-3, "a finite number > 0", lambda v: v > 0)  # Adam learning rate
    weight_decay: float = _setting(0.0, "a finite number >= 0", lambda v: v >= 0)  # Adam L2 coefficient
    shuffle: bool = _setting(True, "true (seeded reshuffle each epoch) or false (the tutorial's fixed order)")
    select: str = _setting("val_acc", "one of val_acc, val_loss, last", lambda v: v in ("val_acc", "val_loss", "last"))
    device: str = _setting("auto", "one of auto, cpu, cuda, cuda:N", lambda v: v in ("auto", "cpu", "cuda") or _is_cuda_index(v))
    threads: int = _setting(0, "an integer >= 0 (0: torch's default)", lambda v: v >= 0)  # CPU intra-op threads
    # Speed settings (see README "Performance"). Precision changes the numbers, so it is part of a
    # run's key; the other three change only speed and float rounding.
    precision: str = _setting("fp32", "one of fp32 (the tutorial's), bf16 (autocast)", lambda v: v in ("fp32", "bf16"))
    memory_format: str = _setting("auto", "one of auto (channels_last on a CPU, contiguous on CUDA), contiguous, channels_last",
                                  lambda v: v in ("auto", "contiguous", "channels_last"))
    compile: str = _setting("off", "one of off, default, reduce-overhead (CUDA graphs), max-autotune",
                            lambda v: v in ("off", "default", "reduce-overhead", "max-autotune"))
    determinism: str = _setting("cudnn", "one of cudnn (the tutorial's flags), strict (deterministic algorithms), fast (cuDNN autotuning)",
                                lambda v: v in ("cudnn", "strict", "fast"))


@dataclass(frozen=True)
class DataConfig:
    dir: str = _setting("", "a directory path ('' means $HARNESS_DATA_DIR, else ./data)")
    split: str = _setting("stratified", "one of prefix, stratified", lambda v: v in ("prefix", "stratified"))
    train_ratio: float = _setting(0.8, "a number strictly between 0 and 1", lambda v: 0 < v < 1)
    split_seed: int = _setting(0, "an integer >= 0", lambda v: v >= 0)  # seeds the split only, never training


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = _setting("default", "a non-empty name of letters, digits, '-', '_' or '.'", lambda v: _is_name(v))
    variants: tuple[str, ...] = ("baseline",)
    baseline: str = _setting("baseline", "the name of a registered variant", lambda v: bool(v))  # the reference of every comparison
    seeds: tuple[int, ...] = (DEFAULT_BASE_SEED,)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-variant overrides
    search: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-variant Optuna search spaces
    tracking_uri: str = _setting("", "'' (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db), sqlite:///PATH, file:PATH, http(s)://HOST")
    reports_dir: str = _setting("reports", "a directory path")
    checkpoint_dir: str = _setting("checkpoints", "a directory path")  # per-epoch checkpoints and run claims


@dataclass(frozen=True)
class RunSpec:
    """Everything one (variant, seed) run needs, fully resolved."""

    experiment: str
    variant: str
    seed: int
    train: TrainConfig
    model_params: dict[str, Any]

    def flat(self) -> dict[str, Any]:
        out = {"experiment": self.experiment, "variant": self.variant, "seed": self.seed}
        out.update({f"train.{k}": v for k, v in dataclasses.asdict(self.train).items()})
        out.update({f"model.{k}": v for k, v in sorted(self.model_params.items())})
        return out


def _is_cuda_index(v: str) -> bool:
    return v.startswith("cuda:") and v[5:].isdigit()


def _is_name(v: str) -> bool:
    return bool(v) and all(c.isalnum() or c in "-_." for c in v)


# ---------------------------------------------------------------- checking values


def _check_value(where: str, value: Any, kind: type) -> Any:
    """Type-check one value against the field's declared type; returns it converted (int -> float)."""
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
    else:  # pragma: no cover - every field type is listed above
        raise TypeError(kind)
    if not ok:
        raise UsageError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: expected a table, got {type(table).__name__} {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise UsageError(f"{where}.{unknown[0]}: unknown setting; allowed: {', '.join(sorted(fields))}")
    values = {}
    for name, value in table.items():
        f = fields[name]
        key = f"{where}.{name}" if where else name
        value = _check_value(key, value, _type_of(f))
        if not f.metadata["check"](value):
            raise UsageError(f"{key}: {value!r} is not allowed; expected {f.metadata['allowed']}")
        values[name] = value
    return cls(**values)


def _type_of(f: dataclasses.Field) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]


def train_settings(table: dict[str, Any], where: str = "train") -> TrainConfig:
    """A TrainConfig from a table of train.* settings, checked like the experiment file's."""
    return _build(TrainConfig, table, where)


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


def parse_seed_flag(text: str) -> tuple[int, ...]:
    """`--seeds 3` (a count), `--seeds 2021,2022` (a list), `--seeds 7,` (one seed)."""
    parts = [p.strip() for p in text.split(",")]
    lone = len(parts) == 1
    parts = [p for p in parts if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--seeds: {text!r} is not allowed; expected a count (e.g. 3) or a comma-separated list of integers") from None
    if lone and len(values) == 1 and 1 <= values[0] <= MAX_SEED_COUNT:
        return parse_seeds(values[0], "--seeds")
    return parse_seeds(values, "--seeds")


def parse_variant_list(text: str, where: str = "--variants") -> tuple[str, ...]:
    names = [p.strip() for p in text.split(",")]
    if not any(names):
        raise UsageError(f"{where}: the variant list is empty; name at least one variant")
    return tuple(names)


# ---------------------------------------------------------------- loading and overriding


def experiments_dir() -> Path:
    """The project's `experiments/` folder (beside the package in a checkout or editable install)."""
    return Path(__file__).resolve().parent.parent / "experiments"


def find_experiment(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.is_file():
            raise UsageError(f"--experiment: file {str(path)!r} does not exist")
        return path
    for folder in (Path("experiments"), experiments_dir()):
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in (Path("experiments"), experiments_dir()) if folder.is_dir() for p in folder.glob("*.toml")})
    raise UsageError(f"--experiment: no experiment named {name_or_path!r}; known: {', '.join(known) or 'none'} (or give a .toml path)")


def read_experiment_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--experiment: cannot read {str(path)!r}: {e}") from None
    if not text.strip():
        raise UsageError(f"--experiment: {str(path)!r} is empty; expected TOML settings")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--experiment: {str(path)!r} is not valid TOML: {e}") from None
    table.setdefault("name", path.stem)
    return table


def merge_params(table: dict[str, Any], path: Path) -> None:
    """Merge the `[params.<variant>]` tables of a parameters file (as `tune` writes) into `table`."""
    if not path.is_file():
        raise UsageError(f"--params-from: file {str(path)!r} does not exist")
    try:
        extra = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--params-from: {str(path)!r} is not valid TOML: {e}") from None
    unknown = sorted(set(extra) - {"params", "tuning"})
    if unknown or not isinstance(extra.get("params"), dict):
        raise UsageError(f"--params-from: {str(path)!r} must hold [params.<variant>] tables (and optionally [tuning]), found {unknown or 'no params'}")
    for variant, values in extra["params"].items():
        table.setdefault("params", {}).setdefault(variant, {}).update(values)


def apply_set(table: dict[str, Any], assignment: str) -> None:
    """Apply one `--set dotted.key=value` to a raw settings table; the value is read as TOML."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set: {assignment!r} is not allowed; expected key=value, e.g. train.lr=0.01")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: --set train.device=cpu
    *parents, last = key.split(".")
    node = table
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set: {key!r} goes through a setting that is not a table")
    node[last] = value


def from_table(table: dict[str, Any]) -> ExperimentConfig:
    """Validate a raw settings table (from TOML plus overrides) into an ExperimentConfig."""
    table = dict(table)
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"{unknown[0]}: unknown setting; allowed: {', '.join(sorted(known))}")
    train = _build(TrainConfig, table.pop("train", {}), "train")
    data = _build(DataConfig, table.pop("data", {}), "data")
    variants = table.pop("variants", list(ExperimentConfig.variants))
    if isinstance(variants, str):
        variants = list(parse_variant_list(variants, "variants"))
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise UsageError(f"variants: expected a list of variant names, got {variants!r}")
    seeds = parse_seeds(table.pop("seeds", list(ExperimentConfig.seeds)))
    params = table.pop("params", {})
    search = table.pop("search", {})
    top = _build(ExperimentConfig, table, "")
    cfg = dataclasses.replace(top, variants=tuple(variants), seeds=seeds, train=train, data=data, params=params, search=search)
    validate_variants(cfg)
    validate_search(cfg)
    return cfg


@dataclass(frozen=True)
class SearchParam:
    """One dimension of a search space: a float or int range (optionally log-scaled) or choices."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple = ()


SEARCH_KEYS = {"low", "high", "log", "int", "choices"}


def search_space(cfg: ExperimentConfig, variant: str) -> list[SearchParam]:
    """The variant's search space as declared in `[search.<variant>]` (already validated)."""
    space = []
    for name, spec in sorted(cfg.search.get(variant, {}).items()):
        if "choices" in spec:
            space.append(SearchParam(name, choices=tuple(spec["choices"])))
        else:
            integer = bool(spec.get("int", False))
            low, high = (int(spec["low"]), int(spec["high"])) if integer else (float(spec["low"]), float(spec["high"]))
            space.append(SearchParam(name, low, high, bool(spec.get("log", False)), integer))
    return space


def validate_search(cfg: ExperimentConfig) -> None:
    """Type- and range-check every search space: each end of a range must be a valid setting."""
    import variants as registry

    if not isinstance(cfg.search, dict):
        raise UsageError(f"search: expected a table of per-variant search spaces, got {cfg.search!r}")
    for variant, table in cfg.search.items():
        where = f"search.{variant}"
        if variant not in registry.names():
            raise UsageError(f"{where}: {registry.registry.unknown_message(variant)}")
        if not isinstance(table, dict) or not table:
            raise UsageError(f"{where}: expected a non-empty table of parameter ranges, e.g. lr = {{low = 1e-4, high = 1e-2, log = true}}")
        for name, spec in table.items():
            key = f"{where}.{name}"
            if not isinstance(spec, dict):
                raise UsageError(f"{key}: expected a table such as {{low = 0.0, high = 0.8}} or {{choices = [...]}}, got {spec!r}")
            unknown = sorted(set(spec) - SEARCH_KEYS)
            if unknown:
                raise UsageError(f"{key}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(SEARCH_KEYS))}")
            if "choices" in spec:
                if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
                    raise UsageError(f"{key}: choices must be a non-empty list and stand alone, got {spec!r}")
                ends = spec["choices"]
            else:
                if "low" not in spec or "high" not in spec:
                    raise UsageError(f"{key}: a range needs both low and high, got {spec!r}")
                kind = int if spec.get("int") is True else float
                low = _check_value(f"{key}.low", spec["low"], kind)
                high = _check_value(f"{key}.high", spec["high"], kind)
                for flag in ("log", "int"):
                    if flag in spec:
                        _check_value(f"{key}.{flag}", spec[flag], bool)
                if not low < high:
                    raise UsageError(f"{key}: low ({low}) must be below high ({high})")
                if spec.get("log") and low <= 0:
                    raise UsageError(f"{key}: a log-uniform range needs low > 0, got {low}")
                ends = [low, high]
            for value in ends:  # each end must itself be an allowed setting
                probe = dataclasses.replace(cfg, params={**cfg.params, variant: {**cfg.params.get(variant, {}), name: value}}, search={})
                try:
                    spec_ = resolve(probe, variant, probe.seeds[0])
                    registry.get(variant).build(**spec_.model_params)
                except UsageError as e:
                    raise UsageError(f"{key}: {value!r} is outside what the setting allows ({e})") from None
                except (ValueError, TypeError) as e:
                    raise UsageError(f"{key}: {value!r} is outside what the setting allows ({e})") from None


def validate_variants(cfg: ExperimentConfig) -> None:
    import variants as registry

    if not cfg.variants:
        raise UsageError("variants: the variant list is empty; name at least one variant")
    for name in cfg.variants:
        if name not in registry.names():
            raise UsageError(f"variants: {registry.registry.unknown_message(name)}")
        if cfg.variants.count(name) > 1:
            raise UsageError(f"variants: {name!r} is listed twice; each variant runs once per seed")
    if cfg.baseline not in registry.names():
        raise UsageError(f"baseline: {registry.registry.unknown_message(cfg.baseline)}")
    if not isinstance(cfg.params, dict):
        raise UsageError(f"params: expected a table of per-variant settings, got {cfg.params!r}")
    for name, overrides in cfg.params.items():
        if name not in registry.names():
            raise UsageError(f"params.{name}: {registry.registry.unknown_message(name)}")
        if not isinstance(overrides, dict):
            raise UsageError(f"params.{name}: expected a table of settings, got {overrides!r}")
    for name in cfg.variants:
        spec = resolve(cfg, name, cfg.seeds[0])
        try:
            registry.get(name).build(**spec.model_params)
        except (ValueError, TypeError) as e:
            raise UsageError(f"params.{name}: {e}") from None


def resolve(cfg: ExperimentConfig, variant: str, seed: int) -> RunSpec:
    """Merge, in order: the experiment's training settings, the variant's own overrides, and the
    experiment's `[params.<variant>]` table (model parameters and training settings)."""
    import variants as registry

    v = registry.get(variant)
    overrides = dict(cfg.params.get(variant, {}))
    model_params = dict(v.params)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_over = dict(v.train)
    for key, value in overrides.items():
        where = f"params.{variant}.{key}"
        if key in model_params:
            default = model_params[key]
            model_params[key] = _check_value(where, value, type(default))
        elif key in train_fields:
            train_over[key] = value
        else:
            allowed = sorted(model_params) + sorted(train_fields)
            raise UsageError(f"{where}: unknown setting for variant {variant!r}; allowed: {', '.join(allowed)}")
    merged = {k: v for k, v in dataclasses.asdict(cfg.train).items()}
    merged.update(train_over)
    train = _build(TrainConfig, merged, f"params.{variant}" if train_over else "train")
    return RunSpec(cfg.name, variant, seed, train, model_params)


def load(experiment: str | None, sets: list[str] = (), params_files: list[str] = (), **flags: Any) -> ExperimentConfig:
    """The experiment file (`experiments/default.toml` when none is named), then `[params.*]`
    tables from `params_files` (tuned parameters), then the CLI flags, then `--set` overrides."""
    table: dict[str, Any] = read_experiment_file(find_experiment(experiment or DEFAULT_EXPERIMENT))
    for path in params_files:
        merge_params(table, Path(path))
    for key, value in flags.items():
        if value is None:
            continue
        *parents, last = key.split(".")
        node = table
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = list(value) if isinstance(value, tuple) else value
    for assignment in sets:
        apply_set(table, assignment)
    return from_table(table)


def config_hash(cfg: ExperimentConfig) -> str:
    """A short stable hash of the resolved configuration (what decides the numbers, not where they go)."""
    payload = dataclasses.asdict(cfg)
    payload.pop("tracking_uri", None)
    payload.pop("reports_dir", None)
    payload.pop("checkpoint_dir", None)
    payload.pop("search", None)
    payload["data"].pop("dir", None)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def to_toml(cfg: ExperimentConfig) -> str:
    """The resolved configuration as TOML (logged with every run)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v)

    d = dataclasses.asdict(cfg)
    lines = [f"{k} = {value(d[k])}" for k in ("name", "variants", "baseline", "seeds", "tracking_uri", "reports_dir", "checkpoint_dir")]
    for section in ("train", "data"):
        lines += ["", f"[{section}]"] + [f"{k} = {value(v)}" for k, v in d[section].items()]
    for variant, overrides in sorted(d["params"].items()):
        lines += ["", f"[params.{variant}]"] + [f"{k} = {value(v)}" for k, v in sorted(overrides.items())]
    for variant, space in sorted(d["search"].items()):
        lines += ["", f"[search.{variant}]"]
        lines += [f"{k} = {{" + ", ".join(f"{kk} = {value(vv)}" for kk, vv in spec.items()) + "}" for k, spec in sorted(space.items())]
    return "\n".join(lines) + "\n"
