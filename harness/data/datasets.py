"""The datasets a run can train on: one record each (name, class names, image shape, cache file)
and how its cache is made when it is missing. `data.dataset = "NAME"` chooses one.

Every dataset lives on disk as one npz file in the data directory (keys x_train, y_train, x_test,
y_test; uint8 images N×H×W×C, uint8 labels), so loading, checking, hashing and splitting are the
same for all of them, including the user's own `folder:PATH` and `npz:PATH` (harness/data/user_data.py).
To add one, write a `make` function that returns those four arrays and
register a `Dataset` (docs/extending.md, "Adding a dataset").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.base.errors import UsageError
from harness.data import user_data

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: tuple[str, ...]  # class names, index = label
    image_shape: tuple[int, int, int]  # (channels, height, width), as the model sees an image
    filename: str  # the npz cache in the data directory
    make: Callable[[Path], Arrays]  # the four arrays when the cache is missing (download or build)
    source: str  # one line: where the images come from

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _torchvision(kind: str) -> Callable[[Path], Arrays]:
    """Download the dataset with torchvision into `directory` (train and test parts)."""

    def make(directory: Path) -> Arrays:
        import torchvision

        cls = getattr(torchvision.datasets, kind)
        train = cls(str(directory), train=True, download=True)
        test = cls(str(directory), train=False, download=True)
        return {
            "x_train": train.data,
            "y_train": np.asarray(train.targets, dtype=np.uint8),
            "x_test": test.data,
            "y_test": np.asarray(test.targets, dtype=np.uint8),
        }

    make.__name__ = f"download_{kind.lower()}"
    return make


DIGITS_TRAIN = 1500  # of scikit-learn's 1,797 digits, in its order: the first 1,500 train, the last 297 test


def make_digits(directory: Path) -> Arrays:
    """scikit-learn's handwritten digits (8×8, 17 grey levels, shipped inside the package): grey
    levels scaled to 0..255 and each pixel repeated 4×4, so the images are 32×32 like CIFAR's."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError(
            "data.dataset: 'digits' needs scikit-learn; install it with `pip install scikit-learn`"
        ) from None
    digits = load_digits()
    x = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    x = x.repeat(4, axis=1).repeat(4, axis=2)[..., None]  # N×32×32×1
    y = digits.target.astype(np.uint8)
    return {
        "x_train": x[:DIGITS_TRAIN],
        "y_train": y[:DIGITS_TRAIN],
        "x_test": x[DIGITS_TRAIN:],
        "y_test": y[DIGITS_TRAIN:],
    }


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# the fine labels, in label order (alphabetical, as the dataset's meta file lists them)
CIFAR100_CLASSES = tuple(
    """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree
wolf woman worm
""".split()
)

_REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "cifar10",
            CIFAR10_CLASSES,
            (3, 32, 32),
            "cifar10.npz",
            _torchvision("CIFAR10"),
            "CIFAR-10 (Krizhevsky 2009), downloaded by torchvision",
        ),
        Dataset(
            "cifar100",
            CIFAR100_CLASSES,
            (3, 32, 32),
            "cifar100.npz",
            _torchvision("CIFAR100"),
            "CIFAR-100 with its 100 fine labels (Krizhevsky 2009), downloaded by torchvision",
        ),
        Dataset(
            "digits",
            tuple(str(i) for i in range(10)),
            (1, 32, 32),
            "digits.npz",
            make_digits,
            "scikit-learn's 1,797 handwritten digits (UCI), upsampled from 8×8 to 32×32",
        ),
    )
}


def register_dataset(dataset: Dataset) -> Dataset:
    """Add `dataset` to the registry, so `data.dataset = "NAME"` and `--dataset NAME` find it. A
    name already registered is refused with one line naming the dataset that holds it."""
    if not isinstance(dataset, Dataset):
        raise UsageError(f"register_dataset: expected a harness.Dataset, got {type(dataset).__name__}")
    if dataset.name in _REGISTRY:
        raise UsageError(
            f"register_dataset: the name {dataset.name!r} is taken by {_REGISTRY[dataset.name].source!r}; choose another name"
        )
    _REGISTRY[dataset.name] = dataset
    _FROM[dataset.name] = _file_of(dataset.make)
    return dataset


_FROM: dict[str, str] = {}  # a registered dataset's name -> the file of the module that made its record


def _file_of(make: Callable) -> str:
    import sys

    module = sys.modules.get(getattr(make, "__module__", "") or "")
    return str(Path(module.__file__).resolve()) if module is not None and getattr(module, "__file__", None) else ""


def names_from(path: str) -> list[str]:
    """The datasets the file `path` registered."""
    return sorted(n for n, f in _FROM.items() if f == path)


def forget_from(path: str) -> None:
    """Forget the datasets a user's file registered (before that file, edited, is imported again)."""
    for name in names_from(path):
        del _REGISTRY[name], _FROM[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


def allowed(name: object) -> bool:
    """A registered name, or a dataset without code: `folder:PATH` or `npz:PATH` (harness/data/user_data.py)."""
    return name in _REGISTRY or user_data.is_user_dataset(name)


def get(name: str, image_size: int = 0) -> Dataset:
    """The dataset `name`; `image_size` (data.image_size) resizes a folder: dataset's images."""
    if user_data.is_user_dataset(name):
        return Dataset(name, *user_data.record(name, image_size))
    if image_size:
        raise UsageError(
            f"data.image_size: {image_size} resizes the images of a folder: dataset; {name!r} is used as it is (set it to 0)"
        )
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"data.dataset: unknown dataset {name!r}; known: {', '.join(names())}, or folder:PATH (one subfolder of "
            "images per class) or npz:PATH"
        ) from None
