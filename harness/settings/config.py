"""Configuration: the experiment file and `--set` overrides, checked value by value, resolved into
one `RunSpec` per (variant, seed).

What a run trains with is `engine.TrainSettings` (the engine's own type); how it executes is
`engine.Runtime`; where things go is `Paths`. An experiment file keeps its familiar layout: the
`[train]` table holds both training and runtime settings, and `[data] dir` is a path. Every value
is checked against the table `checks.CHECKS`, so a bad value fails with one line naming the field,
the value and what is allowed, before any run or file is created.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from harness.base.errors import UsageError
from harness.data import datasets
from harness.settings import checks, designs
from harness.settings.analysis import Analysis, Sequential
from harness.settings.checks import Split
from harness.settings.designs import Design
from harness.settings.seeds import DEFAULT_BASE_SEED, MAX_SEED_COUNT, parse_seeds, seed_plan, seed_sources  # noqa: F401 - re-exported
from harness.training.settings import Runtime, Sources, TrainSettings

DEFAULT_EXPERIMENT = "default"  # harness/experiments/default.toml, used when no --experiment is given


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"  # a name in harness/data/datasets.py
    split: Split = "stratified"  # prefix: the tutorial's
    train_ratio: float = 0.8  # of the training set; the rest is validation
    split_seed: int | str = 0  # seeds the split only, never training; "per_seed": each training seed its own split
    image_size: int = 0  # a folder: dataset's images resized to image_size × image_size; 0: used as they are (one size)


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
    # `[search.*]` as written; harness/settings/search.py reads it
    search: dict[str, dict[str, Any]] = field(default_factory=dict)
    design: Design = field(default_factory=Design)  # how `variants` was made (harness/settings/designs.py)
    analysis: Analysis = field(default_factory=Analysis)  # how the report decides its verdicts
    # seeds = "auto": seeds on demand (harness/analysis/sequential.py); `seeds` are its candidates
    sequential: Sequential | None = None
    sources: Sources = field(default_factory=Sources)  # `[seeds]`: which seed each source of randomness follows
    # the user's component files (absolute) and modules, imported before the variants resolve
    components: tuple[str, ...] = ()

    @property
    def reports_folder(self) -> Path:
        return Path(self.paths.reports_dir) / self.name

    @property
    def checkpoint_folder(self) -> Path:
        return Path(self.paths.checkpoint_dir) / self.name

    def trained(self) -> dict[str, Any]:
        """What decides the numbers (not how they are computed, nor where they go)."""
        # absent by default: hashes stay
        data = {k: v for k, v in dataclasses.asdict(self.data).items() if k != "image_size" or v}
        out = {
            "name": self.name,
            "variants": list(self.variants),
            "baseline": self.baseline,
            "seeds": list(self.seeds),
            "train": neutral_left_out(self.train),
            "data": data,
            "params": self.params,
            "design": {"kind": self.design.kind, "factors": list(self.design.factors)},
        }
        # absent by default: hashes stay as they were
        out |= {"sources": self.sources.pinned()} if self.sources.pinned() else {}
        return out | ({"sequential": dataclasses.asdict(self.sequential)} if self.sequential else {})


def neutral_left_out(train) -> dict[str, Any]:
    """Training settings as a dict, a setting added later left out at its neutral default (so the
    hashes of configurations made before it existed stay as they were)."""
    return {
        f.name: getattr(train, f.name)
        for f in dataclasses.fields(train)
        if not (f.metadata.get("neutral") and getattr(train, f.name) == f.default)
    }


@dataclass(frozen=True)
class RunSpec:
    """Everything one (variant, seed) run trains with, fully resolved."""

    experiment: str
    variant: str
    seed: int
    train: TrainSettings
    model_params: dict[str, Any]
    sources: Sources = Sources()
    split_seed: int | str | None = None  # a variance design's `v@SOURCE`: the split's seed; None: `data.split_seed`
    # each user component of the variant: its source hash (shipped ones: none)
    code: dict[str, str] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """The run's one serialisation (its MLflow params): experiment, variant, seed, pinned sources,
        training settings, model parameters and component code hashes. Its variant key, its parent's
        params and the `[run]` table of its logged config.toml are derived from it."""
        out = {"experiment": self.experiment, "variant": self.variant, "seed": self.seed}
        out.update({f"seeds.{k}": v for k, v in self.sources.pinned().items()})
        out.update({"seeds.split": self.split_seed} if self.split_seed is not None else {})
        out.update({f"train.{k}": v for k, v in dataclasses.asdict(self.train).items()})
        out.update({f"model.{k}": v for k, v in sorted(self.model_params.items())})
        out.update({f"code.{k}": v for k, v in sorted(self.code.items())})
        return out

    def variant_key(self, dataset: str, split: str) -> str:
        """The one place that says what identifies a variant's configuration: the run's one
        serialisation (`flat`, also its parent's params) without the seed, with the dataset
        (`name:content hash`) and the split's fingerprint: the experiment, the variant, every training
        setting (a setting added later is left out at its neutral value, so the keys of runs made
        before it existed stay valid), the model parameters, the pinned sources of randomness
        (`[seeds]`) and the source hash of each user component (editing its file makes new runs).
        Nothing of `Runtime`."""
        neutral = {
            f"train.{f.name}"
            for f in dataclasses.fields(self.train)
            if f.metadata.get("neutral") and getattr(self.train, f.name) == f.default
        }
        payload = {k: v for k, v in self.flat().items() if k not in ("seed", "seeds.split") and k not in neutral}
        payload.update({"data": dataset, "split": split})  # a variance design's own split seed enters through `split`
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def key(self, dataset: str, split: str) -> str:
        """Identifies one run: its variant's key and the seed."""
        return f"{self.variant_key(dataset, split)}-{self.seed}"


def parse_variant_list(text: str, where: str = "--variants") -> tuple[str, ...]:
    names = [p.strip() for p in text.split(",")]
    if not any(names):
        raise UsageError(f"{where}: the variant list is empty; name at least one variant")
    return tuple(names)


TOP_LEVEL = (
    "name",
    "components",
    "variants",
    "baseline",
    "seeds",
    "min_seeds",
    "max_seeds",
    "train",
    "data",
    "params",
    "search",
    "design",
    "analysis",
    "tracking_uri",
    "reports_dir",
    "checkpoint_dir",
)


def _section(table: dict[str, Any], name: str, cls: type, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The table `name` (removed from `table`), holding only the fields of `cls` and `extra`."""
    section = dict(checks.as_table(table.pop(name, {}), name))
    allowed = (*extra, *(f.name for f in dataclasses.fields(cls)))
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise UsageError(f"{name}.{unknown[0]}: unknown setting; allowed: {', '.join(allowed)}")
    return section


def _variants(table: dict[str, Any], design: Design) -> list[str]:
    """The variants a design names (a factorial's cells), else the table's list (removed from `table`)."""
    if design.kind in designs.CELLS and "variants" in table:
        raise UsageError(
            f"variants: not with a {design.kind} design, which names the variants itself; remove one of them"
        )
    if design.kind in designs.CELLS:
        return list(designs.expand(design))
    variants = table.pop("variants", list(ExperimentConfig.variants))
    if isinstance(variants, str):
        variants = list(parse_variant_list(variants, "variants"))
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise UsageError(f"variants: expected a list of variant names, got {variants!r}")
    return variants


def from_table(table: dict[str, Any]) -> ExperimentConfig:
    """Check a raw settings table (from TOML plus overrides) and make an ExperimentConfig of it."""
    table = dict(table)
    unknown = sorted(set(table) - set(TOP_LEVEL))
    if unknown:
        raise UsageError(f"{unknown[0]}: unknown setting; allowed: {', '.join(sorted(TOP_LEVEL))}")
    components = table.pop("components", [])
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise UsageError(f"components: expected a list of .py files or module names, got {components!r}")
    if components:
        from harness.variants import plugins

        plugins.load(components, "components")
    train, runtime = checks.train_settings(table.pop("train", {}))
    data_table = _section(table, "data", DataConfig, extra=("dir",))
    data_dir = data_table.pop("dir", "")
    data = checks.build(DataConfig, data_table, "data")
    if data.split_seed == "per_seed" and data.split != "stratified":
        raise UsageError(
            f'data.split_seed: "per_seed" needs data.split = "stratified" (the {data.split} split does not use a seed)'
        )
    paths = {
        "tracking_uri": table.pop("tracking_uri", ""),
        "reports_dir": table.pop("reports_dir", "reports"),
        "checkpoint_dir": table.pop("checkpoint_dir", "checkpoints"),
    }
    paths = Paths(
        **{k: checks.checked("", k, v, str) for k, v in paths.items()},
        data_dir=checks.checked("data", "dir", data_dir, str),
    )
    design = designs.from_table(table.pop("design", {}))
    analysis = checks.build(Analysis, _section(table, "analysis", Analysis), "analysis")
    variants = _variants(table, design)
    runs, sources, split_seed = seed_sources(table.pop("seeds", list(ExperimentConfig.seeds)))
    if split_seed is not None:
        if "split_seed" in data_table and data_table["split_seed"] != split_seed:
            raise UsageError(
                f"seeds.split: {split_seed!r} and data.split_seed {data_table['split_seed']!r} both set the split's seed; keep one"
            )
        data = dataclasses.replace(data, split_seed=split_seed)
    seeds, sequential = seed_plan(runs, table.pop("min_seeds", None), table.pop("max_seeds", None))
    if sequential and design.kind in designs.CELLS:
        raise UsageError(
            f'seeds: "auto" works with a list of variants, not a {design.kind} design (its effects need every cell on the same seeds); '
            "give a number of seeds"
        )
    params = table.pop("params", {})
    search = table.pop("search", {})
    if not isinstance(search, dict):
        raise UsageError(f"search: expected a table of per-variant search spaces, got {search!r}")
    top = {k: checks.checked("", k, v, str) for k, v in table.items()}
    if "baseline" in top:
        top["baseline"] = canonical_names([top["baseline"]], "baseline")[0]
    variants = canonical_names(variants, "variants")
    if design.kind == "variance":
        design, variants = _variance(
            design, variants, data, sources, sequential, seeds, data.split_seed != DataConfig.split_seed
        )
    cfg = ExperimentConfig(
        **top,
        variants=tuple(variants),
        seeds=seeds,
        train=train,
        data=data,
        params=params,
        runtime=runtime,
        paths=paths,
        search=search,
        design=design,
        analysis=analysis,
        sequential=sequential,
        sources=sources,
        components=tuple(components),
    )
    validate_variants(cfg)
    if design.kind == "variance":
        cfg = _skip_undrawn(cfg)
    if sequential and (cfg.baseline not in cfg.variants or len(cfg.variants) < 2):
        raise UsageError(
            f'seeds: "auto" adds seeds until each variant is decided against the baseline, so the variants must include '
            f"the baseline {cfg.baseline!r} and at least one other, got {', '.join(cfg.variants)}"
        )
    return cfg


def _variance(
    design: Design, variants: list[str], data: DataConfig, sources: Sources, sequential, seeds, split_pinned: bool
) -> tuple[Design, list[str]]:
    """A variance design's sources (all of them by default; `split` only when the split takes a
    seed) and its variants, `v@all` and `v@SOURCE` for each variant named."""
    if sources.pinned() or sequential:
        raise UsageError(
            "seeds: a variance design sets each source's seed itself and needs a fixed number of seeds; "
            'give `seeds = N` (or --seeds N) without pinned sources or "auto"'
        )
    if split_pinned:
        raise UsageError(
            "data.split_seed: a variance design sets the split's seed itself (the first seed for v@SOURCE, each "
            "seed's own for v@all and v@split); leave data.split_seed and seeds.split unset"
        )
    if len(seeds) < 2:
        raise UsageError(f"seeds: a variance design needs at least 2 seeds to estimate a variance; got {len(seeds)}")
    designs.pin_seed(seeds)
    chosen = design.factors or tuple(s for s in designs.VARIANCE_SOURCES if s != "split" or data.split == "stratified")
    if "split" in chosen and data.split != "stratified":
        raise UsageError(
            f'design.sources: "split" needs data.split = "stratified" (the {data.split} split does not use a seed)'
        )
    twice = next((v for i, v in enumerate(variants) if v in variants[:i]), None)
    if twice:
        raise UsageError(
            f"variants: {twice!r} is listed twice (components in any order name one variant); each is decomposed once"
        )
    return dataclasses.replace(design, factors=chosen), list(designs.by_source(variants, chosen))


def validate_variants(cfg: ExperimentConfig) -> None:
    """Every variant names registered components that compose, builds for the dataset, and is listed once."""
    import harness.variants as registry

    if not cfg.variants:
        raise UsageError("variants: the variant list is empty; name at least one variant")
    if not isinstance(cfg.params, dict):
        raise UsageError(f"params: expected a table of per-component settings, got {cfg.params!r}")
    for name, overrides in cfg.params.items():
        if name not in registry.names():
            raise UsageError(f"params.{name}: {registry.unknown_message(name)}")
        if not isinstance(overrides, dict):
            raise UsageError(f"params.{name}: expected a table of settings, got {overrides!r}")
        resolve(cfg, name, cfg.seeds[0])  # every value is checked, even for a component no variant here uses
    extra = () if cfg.baseline in cfg.variants else (cfg.baseline,)  # checked once
    for i, name in enumerate((*cfg.variants, *extra)):
        where = "variants" if i < len(cfg.variants) else "baseline"
        if where == "variants" and name in cfg.variants[:i]:
            raise UsageError(
                f"variants: {name!r} is listed twice (components in any order name one variant); each variant runs once per seed"
            )
        check_builds(cfg, resolve(cfg, name, cfg.seeds[0]), f"{where}: {name}")


def canonical_names(names: list[str], where: str) -> list[str]:
    """Each variant's canonical name: its components sorted and joined by '+', or 'baseline'."""
    import harness.variants as registry

    out = []
    for name in names:
        try:
            out.append(registry.canonical(name))
        except registry.UnknownVariant as e:
            raise UsageError(f"{where}: {e}") from None
    return out


def _skip_undrawn(cfg: ExperimentConfig) -> ExperimentConfig:
    """A variance design without the `v@dropout` and `v@augment` runs of a variant that draws
    nothing from that source (no dropout or other draw of torch's generator while training; no
    batch transform): each would be the same run over every seed. The design records what it
    skipped, so the report and `plan` say so."""
    import harness.variants as registry

    dataset = datasets.get(cfg.data.dataset, cfg.data.image_size)
    skipped = []
    for base in designs.bases(cfg.variants):
        spec = resolve(cfg, f"{base}@{designs.ALL}", cfg.seeds[0])
        change = registry.get(base).change(spec.model_params)
        drawn = {"augment": change.transform is not None, "dropout": _draws_while_training(change, dataset)}
        lacks = tuple(s for s in cfg.design.factors if drawn.get(s, True) is False)
        if lacks:
            skipped.append((base, lacks))
    if not skipped:
        return cfg
    design = dataclasses.replace(cfg.design, skipped=tuple(skipped))
    variants = designs.by_source(designs.bases(cfg.variants), design.factors, dict(skipped))
    return dataclasses.replace(cfg, design=design, variants=variants)


def _draws_while_training(change, dataset) -> bool:
    """Whether a training step of this change's network draws from torch's global generator (the
    `dropout` source): one forward and loss of a small batch in training mode, the generator's
    state compared before and after (and then put back). A network this probe cannot run is
    assumed to draw, so nothing is skipped for it."""
    import torch

    saved = torch.get_rng_state()
    try:
        model = change.build(dataset.image_shape, dataset.num_classes).train()  # its init draws: not training
        x = torch.rand((2, *dataset.image_shape), generator=torch.Generator().manual_seed(0))
        before = torch.get_rng_state()
        with torch.no_grad():
            (change.loss or torch.nn.CrossEntropyLoss)()(model(x), torch.zeros(2, dtype=torch.long))
        return not torch.equal(before, torch.get_rng_state())
    except Exception:  # noqa: BLE001 - the run itself will say what is wrong with the network
        return True
    finally:
        torch.set_rng_state(saved)


def check_builds(cfg: ExperimentConfig, spec: RunSpec, where: str) -> None:
    """The variant's components compose, accept their parameters and build for the experiment's dataset."""
    import harness.variants as registry

    dataset = datasets.get(cfg.data.dataset, cfg.data.image_size)
    try:
        registry.get(designs.split_source(spec.variant)[0]).build(
            dataset.image_shape, dataset.num_classes, spec.model_params
        )
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where}: {e}") from None


def resolve(cfg: ExperimentConfig, variant: str, seed: int) -> RunSpec:
    """Merge, in order: the experiment's training settings, each component's own overrides and its
    `[params.<component>]` table (its parameters and training settings). Two components that set
    one training setting to different values are refused, naming both."""
    import harness.variants as registry

    base, source = designs.split_source(variant)
    v = registry.get(base)
    model_params = dict(v.params)
    train_over: dict[str, tuple[str, Any]] = {}
    # The baseline has no components: its `[params.baseline]` table (training settings only, as
    # `tune --variant baseline` writes) applies to the variant with none.
    for c in v.components or (registry.component(registry.BASELINE),):
        overrides = dict(c.train)
        for key, value in cfg.params.get(c.name, {}).items():
            where = f"params.{c.name}.{key}"
            if key in c.params:
                model_params[f"{c.name}.{key}"] = checks.check_value(where, value, type(c.params[key]))
            elif key in checks.TRAIN_FIELDS:
                overrides[key] = value
            else:
                allowed = sorted(c.params) + sorted(checks.TRAIN_FIELDS)
                raise UsageError(f"{where}: unknown setting for component {c.name!r}; allowed: {', '.join(allowed)}")
        for key, value in overrides.items():
            if key in train_over and train_over[key][1] != value:
                raise UsageError(
                    f"variants: {variant}: components {train_over[key][0]!r} and {c.name!r} both set train.{key}, "
                    f"to {train_over[key][1]!r} and {value!r}; compose components that change different things"
                )
            train_over[key] = (
                c.name,
                checks.checked("train", key, value, type(getattr(cfg.train, key)), f"params.{c.name}.{key}"),
            )
    train = dataclasses.replace(cfg.train, **{k: v for k, (_, v) in train_over.items()})
    code = {c.name: c.digest for c in v.components if not c.shipped}
    if source is None:
        return RunSpec(cfg.name, v.name, seed, train, model_params, cfg.sources, code=code)
    sources, split_seed = designs.fixed_sources(source, designs.pin_seed(cfg.seeds))  # a variance design's run
    return RunSpec(cfg.name, f"{v.name}@{source}", seed, train, model_params, sources, split_seed, code)


def config_hash(cfg: ExperimentConfig) -> str:
    """A short stable hash of what decides the numbers (not how they are computed, nor where they go)."""
    return hashlib.sha256(json.dumps(cfg.trained(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def to_toml(cfg: ExperimentConfig, extra: dict[str, Any] | None = None) -> str:
    """The resolved configuration as an experiment file (logged with every run); `extra` tables
    are added at the end."""
    train = {**dataclasses.asdict(cfg.train), **{k: getattr(cfg.runtime, k) for k in checks.RUNTIME_FIELDS}}
    seeds = {"seeds": "auto", **dataclasses.asdict(cfg.sequential)} if cfg.sequential else {"seeds": list(cfg.seeds)}
    if cfg.sources.pinned():  # the [seeds] table: the runs' seeds and the pinned sources
        seeds["seeds"] = {"runs": seeds["seeds"], **cfg.sources.pinned()}
    table = {
        "name": cfg.name,
        **({"components": list(cfg.components)} if cfg.components else {}),
        "variants": list(cfg.variants),
        "baseline": cfg.baseline,
        **seeds,
        "tracking_uri": cfg.paths.tracking_uri,
        "reports_dir": cfg.paths.reports_dir,
        "checkpoint_dir": cfg.paths.checkpoint_dir,
        "train": train,
        "data": {"dir": cfg.paths.data_dir, **dataclasses.asdict(cfg.data)},
        "params": cfg.params,
        "search": cfg.search,
        "analysis": dataclasses.asdict(cfg.analysis),
        **(extra or {}),
    }
    if cfg.design.kind != "list":
        table["design"] = {
            "kind": cfg.design.kind,
            designs.TABLE_KEY[cfg.design.kind]: list(cfg.design.factors),
            "allow_large": cfg.design.allow_large,
        }
        if cfg.design.kind == "variance":  # the variants it decomposes, as named
            table["variants"] = designs.bases(cfg.variants)
        else:
            del table["variants"]
    return tomli_w.dumps(table)
