"""A dataset in memory: finding or making its npz file, checking it against the dataset's record,
its content hash, the hold-out split and its fingerprint, and moving the uint8 tensors to the
training device once.

Batches are index slices of those tensors, converted to float in [0, 1] on the device by the engine:
exactly the values torchvision's `ToTensor()` gives, without a per-sample PIL decode or DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.base.errors import UsageError
from harness.base.files import atomic_write, cache_dir
from harness.data import datasets, user_data
from harness.data.datasets import Dataset

KEYS = ("x_train", "y_train", "x_test", "y_test")  # the arrays of a dataset's npz file
DIGEST_SUFFIX = ".sha256.json"  # the content hash's cache, beside the file (or in the user cache)


@dataclass(frozen=True)
class Arrays:
    """The dataset as numpy uint8 arrays, images NHWC as stored."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Source:
    """A dataset as read from its file: its record, its content hash and its arrays."""

    dataset: Dataset
    digest: str  # sha256 of the npz file, first 16 hex digits
    arrays: Arrays

    @property
    def identity(self) -> str:
        """What a run key says of the data: the dataset's name and the file's content hash; for the
        user's `folder:` and `npz:` data, the kind without the path (however it is spelled, and
        wherever the data lives, the same content gives the same keys)."""
        name = self.dataset.name.split(":", 1)[0] if user_data.is_user_dataset(self.dataset.name) else self.dataset.name
        return f"{name}:{self.digest}"


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


@dataclass(frozen=True)
class Loaded:
    """An experiment's data, ready to train on: the source, the split, the tensors on the device."""

    source: Source
    split: Split
    tensors: DeviceData


def data_dir(setting: str = "") -> Path:
    """The data directory: the setting, else $HARNESS_DATA_DIR, else ./data."""
    return Path(setting or os.environ.get("HARNESS_DATA_DIR") or "data")


def read_source(dataset: Dataset, directory: Path, make: bool = True) -> Source:
    """Read `directory/<dataset file>`; when it is missing, make it once (torchvision downloads
    CIFAR, scikit-learn's digits are built from the package). Fails with a UsageError that says
    how to fix it."""
    path = directory / dataset.filename  # a user's dataset names an absolute path: its file, or its cache
    if not path.exists() and make:
        _make_cache(dataset, path.parent)
    if not path.exists():
        raise UsageError(
            f"data: {str(path)!r} does not exist; put {dataset.filename} there or pass --data-dir / HARNESS_DATA_DIR"
        )
    if not path.is_file():
        raise UsageError(f"data: {str(path)!r} is not a regular file; expected the npz file of {dataset.name}")
    arrays = check(read_npz(path), str(path), dataset)
    return Source(dataset, content_digest(path), arrays)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise UsageError(f"data: {str(path)!r} lacks key {missing[0]!r}; expected keys {', '.join(KEYS)}")
            return {k: f[k] for k in KEYS}
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(
            f"data: {str(path)!r} is not a readable .npz file ({type(e).__name__}: {e}); re-create or re-download it"
        ) from None


def check(arrays: dict[str, np.ndarray], where: str, dataset: Dataset = datasets.get("cifar10")) -> Arrays:
    """Check dtypes, shapes (the dataset's image shape), label range and class count; return the arrays."""
    c, h, w = dataset.image_shape
    arrays = dict(arrays)
    # integer labels of another width (numpy's default int64) are taken as uint8 when they fit
    for key in (
        "y_train",
        "y_test",
    ):
        y = arrays[key]
        if y.dtype != np.uint8 and y.dtype.kind in "iu" and y.size and 0 <= int(y.min()) and int(y.max()) <= 255:
            arrays[key] = y.astype(np.uint8)
    for key in KEYS:
        a = arrays[key]
        if key.startswith("x") and a.ndim == 3 and c == 1:  # N×H×W grey images: their channel axis added
            a = arrays[key] = a[..., None]
        if a.dtype != np.uint8:
            hint = ""
            if key.startswith("x") and a.dtype.kind == "f" and a.size and 0 <= float(a.min()) and float(a.max()) <= 1:
                hint = "; its values lie in [0, 1]: save (x * 255).round().astype(np.uint8)"
            raise UsageError(f"data: {where}: {key} has dtype {a.dtype}; expected uint8{hint}")
        want = (h, w, c) if key.startswith("x") else ()
        if a.ndim != 1 + len(want) or a.shape[1:] != want:
            shown = f"(N, {h}, {w}, {c})" if want else "(N,)"
            raise UsageError(f"data: {where}: {key} has shape {a.shape}; expected {shown} for {dataset.name}")
    n = dataset.num_classes
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if len(x) != len(y):
            raise UsageError(f"data: {where}: x_{part} has {len(x)} images but y_{part} has {len(y)} labels")
        if len(y) == 0:
            raise UsageError(f"data: {where}: the {part} set is empty")
        if int(y.max()) >= n:
            raise UsageError(f"data: {where}: y_{part} holds label {int(y.max())}; expected labels 0..{n - 1}")
    present = np.unique(arrays["y_train"]).size
    if present != n:
        raise UsageError(f"data: {where}: y_train holds {present} classes; expected all {n} of {dataset.name}")
    return Arrays(**{k: arrays[k] for k in KEYS})


def _make_cache(dataset: Dataset, directory: Path) -> None:
    """Make the dataset's arrays (download or build) and write its npz cache once, atomically."""
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = dataset.make(directory)
    except Exception as e:  # noqa: BLE001 - any failure here means "could not download" (or, for a folder, a bad image)
        if created:
            shutil.rmtree(directory, ignore_errors=True)  # leave no trace of a failed attempt
        if isinstance(e, UsageError):
            raise
        raise UsageError(
            f"data: no {dataset.filename} in {str(directory)!r} and making it ({dataset.source}) failed ({type(e).__name__}: {e}); "
            f"copy {dataset.filename} into that directory, or point --data-dir / HARNESS_DATA_DIR at a directory holding it"
        ) from None
    # the same arrays: the same bytes, the same hash
    atomic_write(directory / dataset.filename, user_data.npz_bytes(arrays, KEYS))


def content_digest(path: Path) -> str:
    """sha256 of the file, first 16 hex digits. Hashing a large file takes a while, so the digest
    is cached beside it (or in the user cache when its folder is read-only), keyed by the file's
    size and modification time: a changed file is hashed again."""
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    places = [
        path.with_name(path.name + DIGEST_SUFFIX),
        cache_dir() / f"digest-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}.json",
    ]
    for place in places:
        try:
            cached = json.loads(place.read_text(encoding="utf-8"))
            if cached.get("size") == stamp["size"] and cached.get("mtime_ns") == stamp["mtime_ns"]:
                return str(cached["sha256"])
        except (OSError, ValueError, KeyError, AttributeError):
            continue
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()[:16]
    for place in places:
        try:
            atomic_write(place, json.dumps({**stamp, "sha256": digest}))
            break
        except OSError:
            continue  # a read-only folder: try the user cache; if neither, hash again next time
    return digest


PER_SEED = "per_seed"  # `data.split_seed = "per_seed"`: each training seed draws its own split


def split_seed_of(split_seed: int | str, seed: int) -> int:
    """The seed of the split a run with training seed `seed` uses: the experiment's `split_seed`,
    or with "per_seed" the run's own seed (the same for every variant of that seed, so pairs hold)."""
    return seed if split_seed == PER_SEED else int(split_seed)


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
        for c in np.unique(labels):
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
        raise UsageError(
            f"data.train_ratio: {ratio} leaves an empty {'train' if len(train) == 0 else 'validation'} set of {n} images"
        )
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
        x_train=image_tensor(arrays.x_train[split.train], device),
        y_train=label_tensor(arrays.y_train[split.train], device),
        x_val=image_tensor(arrays.x_train[split.val], device),
        y_val=label_tensor(arrays.y_train[split.val], device),
        x_test=image_tensor(arrays.x_test[test], device),
        y_test=label_tensor(arrays.y_test[test], device),
    )


def load_split(
    source: Source, kind: str, ratio: float, split_seed: int, device: torch.device, with_test: bool = True
) -> Loaded:
    """The experiment's split of `source`, its tensors on `device` (without `with_test`, no test set)."""
    split = make_split(source.arrays.y_train, kind, ratio, split_seed)
    return Loaded(source, split, to_device(source.arrays, split, device, with_test))


class Splits:
    """The split each training seed's runs use (one for all, or with "per_seed" one per seed):
    fingerprints computed on the labels alone, and the data on the device, moved when the seed's
    split differs from the one there."""

    def __init__(self, data: Loaded, kind: str, ratio: float, split_seed: int | str, device: torch.device) -> None:
        self.data, self.kind, self.ratio, self.split_seed, self.device = data, kind, ratio, split_seed, device
        self.fingerprints: dict[int, str] = {}  # split seed -> fingerprint

    def _seed_of(self, seed: int, split_seed: int | str | None) -> int:
        """The seed of the split of training seed `seed`: from `split_seed` when given (a variance
        design's runs), else from the experiment's."""
        return split_seed_of(self.split_seed if split_seed is None else split_seed, seed)

    def fingerprint(self, seed: int, split_seed: int | str | None = None) -> str:
        """The fingerprint of the split the runs of training seed `seed` use."""
        split_seed = self._seed_of(seed, split_seed)
        if split_seed not in self.fingerprints:
            self.fingerprints[split_seed] = make_split(
                self.data.source.arrays.y_train, self.kind, self.ratio, split_seed
            ).fingerprint
        return self.fingerprints[split_seed]

    def data_for(self, seed: int, split_seed: int | str | None = None) -> Loaded:
        """The data the runs of `seed` train on, on the device."""
        if self.data.split.fingerprint != self.fingerprint(seed, split_seed):
            self.data = load_split(
                self.data.source, self.kind, self.ratio, self._seed_of(seed, split_seed), self.device
            )
        return self.data
