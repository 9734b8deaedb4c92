"""The engine's two settings types, apart from the engine so that the settings layer can build and
check them without importing torch (resolving an experiment's variants does import it: the
components are torch modules): `TrainSettings` (what a run trains with) and `Runtime` (how it
executes). `harness.training.engine` re-exports both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# What each choice allows, declared once: the settings' checks, their messages and the engine's guards derive from these.
Select = Literal["val_acc", "val_loss", "last"]
Precision = Literal["fp32", "bf16"]
LastBatch = Literal["keep", "drop"]
MemoryFormat = Literal["auto", "contiguous", "channels_last"]
Compile = Literal["off", "default", "reduce-overhead", "max-autotune"]
Determinism = Literal["cudnn", "strict", "fast"]


@dataclass(frozen=True)
class TrainSettings:
    """What a run trains with: these decide its numbers. Defaults: the tutorial's (checks: harness/settings/checks.py)."""

    epochs: int = 100
    batch_size: int = 256  # images per optimizer step
    eval_batch_size: int = 256  # images per forward pass when evaluating (changes float rounding only)
    lr: float = 1e-3  # the optimizer's learning rate (Adam's unless a component chooses another)
    weight_decay: float = 0.0  # the optimizer's L2 coefficient
    # reshuffle the batches each epoch (seeded by the run's seed); False: the tutorial's fixed order
    shuffle: bool = True
    select: Select = "val_acc"  # which epoch's weights are "the model"
    precision: Precision = "fp32"  # bf16: autocast; weights and optimizer stay fp32
    # keep: an epoch's last batch may be smaller; drop: every step the same size, as a captured CUDA graph needs.
    # Added later: at its neutral default it leaves the run keys of older runs as they were.
    last_batch: LastBatch = field(default="keep", metadata={"neutral": True})

    def steps(self, n: int) -> tuple[int, int]:
        """(optimizer steps, images used) of an epoch of `n` training images."""
        if self.last_batch == "drop" and n >= self.batch_size:
            return n // self.batch_size, n // self.batch_size * self.batch_size
        return (n + self.batch_size - 1) // self.batch_size, n


@dataclass(frozen=True)
class Runtime:
    """How a run executes, not what it trains: speed and float rounding only, so a run may resume
    under other values. The engine trains where its tensors live (`device`, `threads`: preflight)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU intra-op threads; 0: torch's default
    memory_format: MemoryFormat = "auto"  # auto: channels_last on a CPU, contiguous on CUDA
    compile: Compile = "off"  # torch.compile's modes (reduce-overhead: CUDA graphs)
    determinism: Determinism = "cudnn"  # the tutorial's flags; strict: deterministic algorithms; fast: cuDNN autotuning
    # off | auto (the group size measured fastest here) | K: train up to K runs as one fused program
    fuse: int | str = "off"
    # checkpoint (and log the epochs since) once this long has passed since the last; 0: every epoch
    checkpoint_seconds: float = 2.0
    # draw each run's learning curves and confusion matrix as PNG artifacts (about 0.45 s of CPU a
    # run here; MLflow's UI charts the logged metrics itself, and the report draws its own figures)
    run_figures: bool = False
    progress_every: int = 0  # report mid-phase progress every N steps (0: only at phase end)


# the training's sources of randomness; the split's is `data.split_seed`
SOURCES = (
    "init",
    "order",
    "dropout",
    "augment",
)


@dataclass(frozen=True)
class Sources:
    """Which seed each source of randomness of a run draws from (`[seeds]` in an experiment file):
    None follows the run's seed, an integer pins the source to that seed in every run.

    With every source following the run's seed (the default) a run draws exactly what it drew
    before sources existed: the initial weights and then the dropout masks from one stream seeded
    by the run's seed, the batch order from a generator seeded by it, augmentation from one seeded
    by it + 1. With any source pinned, every source draws from its own stream (the dropout masks
    from a stream of their own, started after the model is built), so pinning one leaves the others
    varying exactly with the run's seed."""

    init: int | None = None  # initial weights (and Python's and NumPy's generators)
    order: int | None = None  # the batch order of every epoch
    dropout: int | None = None  # dropout masks and any other draw of torch's global generator while training
    augment: int | None = None  # a component's batch transform (crops, flips)

    def pinned(self) -> dict[str, int]:
        """The pinned sources and their seeds."""
        return {s: getattr(self, s) for s in SOURCES if getattr(self, s) is not None}

    def seed(self, source: str, run_seed: int) -> int:
        """The seed `source` draws from in the run of `run_seed`."""
        value = getattr(self, source)
        return run_seed if value is None else value
