"""Seeds, determinism and float flags: the global state a run's numbers depend on, set and saved
here (the engine re-exports what its callers use)."""

from __future__ import annotations

import hashlib
import os
import random
from typing import get_args

import numpy as np
import torch

from harness.training.settings import Determinism


def stream_seed(source: str, seed: int) -> int:
    """A seed for `source`'s own stream, distinct from every other source's for the same seed."""
    return int.from_bytes(hashlib.sha256(f"{source}:{seed}".encode()).digest()[:8], "big") >> 1


def seed_everything(seed: int, determinism: str = "cudnn") -> None:
    """The tutorial's seed function, called once before the model is built."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    set_determinism(determinism)


CUBLAS_WORKSPACE = ":4096:8"  # the fixed cuBLAS workspace deterministic algorithms need


def set_determinism(mode: str = "cudnn") -> None:
    """cudnn: the tutorial's flag, deterministic cuDNN kernels and no autotuning (which picks
    kernels by timing); strict: also torch's deterministic algorithms everywhere (an op without
    one raises); fast: cuDNN autotunes its kernels, so reruns may differ in the last bits."""
    if mode not in get_args(Determinism):
        raise ValueError(f"determinism must be one of {', '.join(get_args(Determinism))}, got {mode!r}")
    if mode == "strict":
        # cuBLAS needs a fixed workspace to be deterministic; read when its first handle is made.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.deterministic = mode != "fast"
    torch.backends.cudnn.benchmark = mode == "fast"
    strict = mode == "strict"
    if torch.are_deterministic_algorithms_enabled() != strict or torch.is_deterministic_algorithms_warn_only_enabled():
        # its first call costs about 2 s (it imports inductor's config): only on a change
        torch.use_deterministic_algorithms(strict)


def global_rng_state(device: torch.device = torch.device("cpu")) -> dict:
    """The states of Python's, NumPy's and torch's global generators, and the generator of the CUDA
    device a run trains on (only that one: a resume may see fewer GPUs), with that device's type."""
    cuda = device.type == "cuda" and torch.cuda.is_initialized()
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if cuda else None,
        "device": device.type,
    }


def set_global_rng_state(rng: dict, device: torch.device = torch.device("cpu")) -> str:
    """Put back what `global_rng_state` saved; a generator missing from `rng` is left as it is.
    Returns a note when the state was saved on another device type than `device` (a CUDA run's
    dropout masks come from its CUDA generator, a CPU run's from torch's): '' otherwise."""
    if "python" in rng:
        random.setstate(rng["python"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    cuda = rng.get("cuda")
    if isinstance(cuda, list):  # written before the device was saved: every visible GPU's state, the run's first
        cuda = cuda[0] if cuda else None
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
    saved_on = rng.get("device", "cuda" if cuda is not None else device.type)
    return "" if saved_on == device.type else saved_on


def set_float_precision(precision: str) -> None:
    """fp32 means float32 arithmetic: TF32 (Ampere and later round matmul and convolution inputs to
    10 bits, cuDNN's default for convolutions) is off; bf16 autocasts, and TF32 may serve what
    stays in float32. provenance.determinism tags both flags on every run."""
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
