"""Everything checked before any run or file is created: the store's address, the device, the
folders a run writes, settings that are valid values but not on this machine, and a
seeds-on-demand design that a rerun would change; then the experiment's data on the device
(`prepare`, what `run`, `tune` and a cluster task start from)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import torch

from harness.base import faults
from harness.base.errors import UsageError
from harness.running import claims
from harness.settings.config import ExperimentConfig
from harness.tracking import provenance
from harness.training import engine


def check(cfg: ExperimentConfig) -> tuple[str, torch.device]:
    """The tracking URI and the device, after every check; applies the thread count and the
    determinism flags (before the first run records how deterministic it is)."""
    from harness.tracking import store

    if faults.wants("round") and not cfg.sequential:
        raise UsageError(
            "HARNESS_FAULT: the point 'round' is passed only with seeds on demand (--seeds auto), so it would never fire; "
            "use step, checkpoint, checkpointed or logged"
        )
    uri = store.resolve_uri(cfg.paths.tracking_uri)
    device = provenance.resolve_device(cfg.runtime.device)
    check_writable(cfg.reports_folder, "reports_dir")
    check_writable(cfg.checkpoint_folder, "checkpoint_dir")
    claims.check_file(cfg.checkpoint_folder / claims.FILENAME)
    for path in sorted(cfg.checkpoint_folder.glob("*.pt")) if cfg.checkpoint_folder.is_dir() else ():
        if not path.is_file():
            raise UsageError(
                f"checkpoint_dir: {str(path)!r} is not a file where a run's checkpoint belongs; remove it (or choose another "
                "checkpoint_dir)"
            )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cfg.runtime.threads > cores:
        raise UsageError(
            f"train.threads: {cfg.runtime.threads} is more than the {cores} core(s) this process may use; "
            f"use at most {cores} (0: torch's default)"
        )
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    check_runtime(cfg.train, cfg.runtime, device)
    engine.set_determinism(cfg.runtime.determinism)
    engine.set_float_precision(cfg.train.precision)  # before the runs' tags record the TF32 flags
    return uri, device


@dataclasses.dataclass(frozen=True)
class Prepared:
    """An experiment ready to train: its store's address, its device and its split on the device."""

    uri: str
    device: torch.device
    data: object  # harness.data.loading.Loaded


DATA_IDENTITY = "HARNESS_DATA_IDENTITY"  # set by harness/running/processes.py for its children


def prepare(cfg: ExperimentConfig, with_test: bool = True, seed: int | None = None, source=None) -> Prepared:
    """Every check before any work, then the data on the device, split as `seed`'s (default: the
    first seed's; with split_seed = "per_seed" the runner draws the others). `source`: the dataset as
    the caller already read it (a cluster task gets the driver's), else read here (and made once,
    e.g. downloaded, only when `seed` is None: a cluster task never downloads)."""
    from harness.data import datasets, loading

    uri, device = check(cfg)
    if source is None:
        dataset = datasets.get(cfg.data.dataset, cfg.data.image_size)
        source = loading.read_source(dataset, loading.data_dir(cfg.paths.data_dir), make=seed is None)
    checked = os.environ.get(DATA_IDENTITY)  # a process of --jobs-per-device: the data its parent checked
    if checked and source.identity != checked:
        raise UsageError(
            f"data.dataset: the data changed after the command checked it ({checked}, now {source.identity}); "
            "no run was started on it: rerun the command"
        )
    split_seed = loading.split_seed_of(cfg.data.split_seed, cfg.seeds[0] if seed is None else seed)
    return Prepared(
        uri, device, loading.load_split(source, cfg.data.split, cfg.data.train_ratio, split_seed, device, with_test)
    )


def check_writable(folder: Path, field: str) -> None:
    """The nearest existing ancestor of `folder` must be a writable directory."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not _writable(probe):
        raise UsageError(
            f"{field}: cannot create or write {str(folder)!r} ({str(probe)!r} is not a writable directory)"
        )


def _writable(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def check_runtime(settings: engine.TrainSettings, runtime: engine.Runtime, device: torch.device) -> None:
    """Values that are valid in themselves but not on this device or machine."""
    if runtime.compile == "reduce-overhead" and device.type != "cuda":
        raise UsageError(
            f"train.compile: 'reduce-overhead' captures CUDA graphs and needs a CUDA device, not {device}; use off or default"
        )
    if runtime.compile != "off" and device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        raise UsageError(
            f"train.compile: {runtime.compile!r} on the CPU needs a C++ compiler (g++ or $CXX) and none was found; use off"
        )
    if runtime.compile != "off" and device.type == "cuda" and not shutil.which(os.environ.get("CC", "gcc")):
        raise UsageError(
            f"train.compile: {runtime.compile!r} on CUDA needs a C compiler (gcc or $CC: Triton builds its kernel launcher) "
            "and none was found; use off"
        )
    if settings.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"train.precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp32")


def keep_sequential(uri: str, cfg, redesign: bool) -> dict[str, str]:
    """Fixed seeds on an experiment started with seeds on demand: refused in one line (its pairs
    would be reused outside the rule that chose when to stop, with more false verdicts than its α)
    unless `redesign`, which the report then discloses. Returns the tags that record it."""
    from harness.tracking import experiment_tags, readback

    try:
        tags = readback.experiment_tags(uri, cfg.name)
    except UsageError:  # a new experiment
        return {}
    started = experiment_tags.started_sequential(tags)
    if not started:
        return {}
    seeds = ",".join(map(str, cfg.seeds))
    if not redesign:
        raise UsageError(
            f"seeds: experiment {cfg.name!r} was started with seeds on demand ({started}); fixed seeds ({seeds}) would reuse "
            "its pairs outside the rule that decided when to stop. Continue with --seeds auto, use a new --name, or "
            "--redesign to analyse it with fixed seeds (the report says so)"
        )
    return experiment_tags.fixed_after_sequential(tags, seeds)


def freeze_design(uri: str, cfg, redesign: bool) -> dict[str, str]:
    """Seeds on demand: record the design before round 1, or refuse a command that changes its
    min/max seeds, first seed, margin, α, deciding test, baseline or variants (exit 2, naming the setting and its
    stored value) unless `redesign`; the report then discloses the change. Returns the tags it set."""
    from harness.tracking import experiment_tags, readback, store

    tags = readback.experiment_tags(uri, cfg.name)
    changes = experiment_tags.design_changes(tags, cfg)
    if changes and not redesign:
        k, before, now = changes[0]
        raise UsageError(
            f"{k}: {now} differs from the seeds-on-demand design experiment {cfg.name!r} started with ({k} = {before}); "
            "its past rounds were decided under it. Use a new --name, or --redesign to change it (the report says so)"
        )
    frozen = experiment_tags.freeze(tags, cfg, changes)
    try:
        store.set_experiment_tags(uri, cfg.name, frozen)
    except store.StoreError:  # a store that takes no writes: the runner meets it and says so
        pass
    return frozen
