"""CIFAR-10 in memory: finding or fetching `cifar10.npz`, checking it, the hold-out split and its
fingerprint, and moving the uint8 tensors to the training device once.

Batches are index slices of those tensors, converted to float in [0, 1] on the device by the engine:
exactly the values torchvision's `ToTensor()` gives, without a per-sample PIL decode or DataLoader workers.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import UsageError

FILENAME = "cifar10.npz"
NUM_CLASSES = 10
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAPES = {"x_train": (None, 32, 32, 3), "y_train": (None,), "x_test": (None, 32, 32, 3), "y_test": (None,)}


@dataclass(frozen=True)
class Arrays:
    """The dataset as numpy uint8 arrays, images NHWC as stored."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the training set, int64
    val: np.ndarray
    fingerprint: str  # sha256 of both index arrays, first 16 hex digits


@dataclass(frozen=True)
class DeviceData:
    """Images as uint8 NCHW and labels as int64, resident on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def data_dir(setting: str = "") -> Path:
    """The data directory: the setting, else $HARNESS_DATA_DIR, else ./data."""
    return Path(setting or os.environ.get("HARNESS_DATA_DIR") or "data")


def load(directory: Path, download: bool = True) -> Arrays:
    """Load `directory/cifar10.npz`; if it is missing, download CIFAR-10 with torchvision into
    `directory` and write the cache once. Fails with a UsageError that says how to fix it."""
    path = directory / FILENAME
    if not path.exists() and download:
        _download_to_cache(directory)
    if not path.exists():
        raise UsageError(f"data: {str(path)!r} does not exist; put cifar10.npz there or pass --data-dir / HARNESS_DATA_DIR")
    return check(read_npz(path), str(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in SHAPES if k not in f.files]
            if missing:
                raise UsageError(f"data: {str(path)!r} lacks key {missing[0]!r}; expected keys {', '.join(SHAPES)}")
            return {k: f[k] for k in SHAPES}
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"data: {str(path)!r} is not a readable .npz file ({type(e).__name__}: {e}); re-create or re-download it") from None


def check(arrays: dict[str, np.ndarray], where: str) -> Arrays:
    """Check shapes, dtypes, label range and class count; return the arrays."""
    for key, shape in SHAPES.items():
        a = arrays[key]
        if a.dtype != np.uint8:
            raise UsageError(f"data: {where}: {key} has dtype {a.dtype}; expected uint8")
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            want = "(N, 32, 32, 3)" if len(shape) == 4 else "(N,)"
            raise UsageError(f"data: {where}: {key} has shape {a.shape}; expected {want}")
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if len(x) != len(y):
            raise UsageError(f"data: {where}: x_{part} has {len(x)} images but y_{part} has {len(y)} labels")
        if len(y) == 0:
            raise UsageError(f"data: {where}: the {part} set is empty")
        if int(y.max()) >= NUM_CLASSES:
            raise UsageError(f"data: {where}: y_{part} holds label {int(y.max())}; expected labels 0..{NUM_CLASSES - 1}")
    present = np.unique(arrays["y_train"]).size
    if present != NUM_CLASSES:
        raise UsageError(f"data: {where}: y_train holds {present} classes; expected all {NUM_CLASSES}")
    return Arrays(**{k: arrays[k] for k in SHAPES})


def _download_to_cache(directory: Path) -> None:
    """torchvision's CIFAR10(download=True) into `directory`, converted once into cifar10.npz."""
    created = not directory.exists()
    try:
        import torchvision

        directory.mkdir(parents=True, exist_ok=True)
        train = torchvision.datasets.CIFAR10(str(directory), train=True, download=True)
        test = torchvision.datasets.CIFAR10(str(directory), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "could not download"
        if created:
            shutil.rmtree(directory, ignore_errors=True)  # leave no trace of a failed attempt
        raise UsageError(
            f"data: no {FILENAME} in {str(directory)!r} and downloading CIFAR-10 there failed ({type(e).__name__}: {e}); "
            f"copy cifar10.npz into that directory, or point --data-dir / HARNESS_DATA_DIR at a directory holding it"
        ) from None
    tmp = directory / (FILENAME + ".tmp.npz")
    np.savez_compressed(
        tmp,
        x_train=train.data, y_train=np.asarray(train.targets, dtype=np.uint8),
        x_test=test.data, y_test=np.asarray(test.targets, dtype=np.uint8),
    )
    os.replace(tmp, directory / FILENAME)


def make_split(labels: np.ndarray, kind: str, ratio: float, split_seed: int) -> Split:
    """`prefix`: the first `ratio` of the official order is train, the rest validation (the tutorial).
    `stratified`: per class, a `split_seed`-seeded shuffle keeps `ratio` of each class for train."""
    n = len(labels)
    if kind == "prefix":
        cut = int(n * ratio)
        train, val = np.arange(cut), np.arange(cut, n)
    elif kind == "stratified":
        rng = np.random.default_rng(split_seed)
        train_parts, val_parts = [], []
        for c in range(NUM_CLASSES):
            idx = np.flatnonzero(labels == c)
            idx = idx[rng.permutation(len(idx))]
            cut = int(round(len(idx) * ratio))
            train_parts.append(idx[:cut])
            val_parts.append(idx[cut:])
        train, val = np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))
    else:
        raise UsageError(f"data.split: {kind!r} is not allowed; expected one of prefix, stratified")
    train, val = train.astype(np.int64), val.astype(np.int64)
    if len(train) == 0 or len(val) == 0:
        raise UsageError(f"data.train_ratio: {ratio} leaves an empty {'train' if len(train) == 0 else 'validation'} set of {n} images")
    return Split(train, val, fingerprint(train, val))


def fingerprint(train: np.ndarray, val: np.ndarray) -> str:
    h = hashlib.sha256()
    for part in (train, val):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def image_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC images as an NCHW tensor on `device` that keeps the file's channels-last memory
    layout (no copy); the engine lays them out as its setting asks."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(device)


def label_tensor(y: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64)).to(device)


def to_device(arrays: Arrays, split: Split, device: torch.device, with_test: bool = True) -> DeviceData:
    """Move the uint8 images and int64 labels to `device`, once (see `image_tensor`). Without
    `with_test` (tuning) the test set stays behind: its tensors are empty."""

    test = slice(None) if with_test else slice(0)
    return DeviceData(
        x_train=image_tensor(arrays.x_train[split.train], device), y_train=label_tensor(arrays.y_train[split.train], device),
        x_val=image_tensor(arrays.x_train[split.val], device), y_val=label_tensor(arrays.y_train[split.val], device),
        x_test=image_tensor(arrays.x_test[test], device), y_test=label_tensor(arrays.y_test[test], device),
    )


