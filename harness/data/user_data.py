"""Datasets without code: `data.dataset = "folder:PATH"` (an image folder) or `"npz:PATH"` (the
four arrays in one file), made into the same `Dataset` record as the shipped ones, so the same
checks, content hash, split and run keys apply.

- `folder:PATH`: one subfolder per class (its name is the class name, in sorted order). With
  `train/` and `test/` subfolders, those are the two parts; otherwise `TEST_SHARE` of each class is
  held out as the test set, drawn with seed `TEST_SEED` (so it is the same for every run and
  machine), and the dataset's description says so. Images of one size are used as they are;
  other sizes need `data.image_size = S`, which resizes every image to S×S (bilinear). Images are
  grey (1 channel) when every one is, else RGB. The decoded arrays are cached as an npz file in the
  user cache, named by a hash of the folder's listing (paths, sizes, modification times) and the
  size, and written byte-for-byte reproducibly, so the content hash, and the run keys with it, are
  the same wherever the same images are decoded.
- `npz:PATH`: x_train, y_train, x_test, y_test (uint8, images N×H×W×C) and optionally
  `class_names` (strings, index = label); without them the classes are named 0..K-1.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from pathlib import Path

import numpy as np

from harness.base.errors import UsageError
from harness.base.files import cache_dir

FOLDER, NPZ = "folder:", "npz:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TEST_SHARE, TEST_SEED = 0.2, 0  # a folder without train/ and test/: the held-out test set
GREY_MODES = ("1", "L", "I;16", "I;16B", "I;16L")
DEEP_MODES = ("I;16", "I;16B", "I;16L")  # 16-bit grey: kept to its top 8 bits
REFUSED_MODES = ("I", "F")  # 32-bit integer or float pixels: no faithful 8-bit image
MAX_IMAGE_SIZE = 1024
CACHE_FORMAT = 2  # bump when the decoded arrays change for the same files
SKIPPED = ("__MACOSX",)  # folders an unzip leaves beside the images (besides hidden ones)
_HEADERS: dict[str, tuple[int, tuple[int, int]]] = {}  # a folder listing's stamp -> (channels, size) of its images


def is_user_dataset(name: object) -> bool:
    return isinstance(name, str) and name.startswith((FOLDER, NPZ)) and len(name.split(":", 1)[1].strip()) > 0


def record(name: str, image_size: int = 0) -> tuple:
    """The fields of the `Dataset` record of `folder:PATH` or `npz:PATH` after its name (classes,
    image shape, file, make, source); bad data: one line, nothing written."""
    if name.startswith(NPZ):
        if image_size:
            raise UsageError(
                f"data.image_size: {image_size} resizes the images of a folder: dataset; an npz file's images are used as stored (set it to 0)"
            )
        path = Path(name[len(NPZ) :]).expanduser()
        classes, shape = _npz_record(name, path)
        check_classes(name, len(classes))
        return classes, shape, str(path.resolve()), _missing(name, path), f"the arrays of {path}"
    root = Path(name[len(FOLDER) :]).expanduser()
    files, parts_named = _listing(name, root)
    classes = tuple(sorted({c for part in files.values() for c in part}))
    if len(classes) == 1:
        only = next(p for p in (root / "train", root) if (p / classes[0]).is_dir()) / classes[0]
        if any(p.is_dir() and not _skipped(p.name) for p in only.iterdir()):
            raise UsageError(
                f"data.dataset: {name!r} has one class folder, {classes[0]!r}, which holds folders: are they the classes? "
                f"Then use folder:{only}"
            )
    check_classes(name, len(classes))
    listing = hashlib.sha256(f"{CACHE_FORMAT} {image_size}".encode())
    for part, by_class in sorted(files.items()):
        for c, paths in sorted(by_class.items()):
            for p in paths:
                st = p.stat()
                listing.update(f"{part}/{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    stamp = listing.hexdigest()[:20]
    if stamp not in _HEADERS:  # the headers are read once per listing, however often a command asks
        _HEADERS[stamp] = _header(name, root, files, image_size)
    channels, size = _HEADERS[stamp]
    cache = cache_dir() / "datasets" / f"folder-{stamp}.npz"
    test = (
        "its train/ and test/ subfolders"
        if parts_named
        else f"{TEST_SHARE:.0%} of each class held out as the test set (seed {TEST_SEED})"
    )
    n = sum(len(p) for part in files.values() for p in part.values())
    source = f"the image folder {root} ({n} images, {len(classes)} classes, {size[0]}×{size[1]}; test: {test})"

    def make(directory: Path) -> dict[str, np.ndarray]:
        return _decode(name, files, classes, channels, size, image_size, parts_named)

    return classes, (channels, size[0], size[1]), str(cache), make, source


def _missing(name: str, path: Path):
    def make(directory: Path):
        raise UsageError(
            f"data.dataset: {name!r}: no file {str(path)!r}; expected an .npz file with x_train, y_train, x_test, y_test"
        )

    return make


def _npz_record(name: str, path: Path) -> tuple[tuple[str, ...], tuple[int, int, int]]:
    """The class names and image shape of an npz dataset, from the file (the images' header only)."""
    if path.is_symlink() and not path.exists():
        raise UsageError(
            f"data.dataset: {name!r}: {str(path)!r} is a link that leads to no file (a loop, or its target is gone); "
            "point it at the .npz file"
        )
    if not path.is_file():
        raise UsageError(
            f"data.dataset: {name!r}: {str(path)!r} is not a file; expected an .npz file with x_train, y_train, x_test, y_test "
            "(and optionally class_names)"
        )
    try:
        with zipfile.ZipFile(path) as z:
            members = set(z.namelist())
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if f"{k}.npy" not in members]
            if missing:
                raise UsageError(
                    f"data.dataset: {name!r} lacks the array {missing[0]!r}; expected x_train, y_train, x_test, y_test (and optionally class_names)"
                )
            with z.open("x_train.npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, _ = read(f)
        with np.load(path, allow_pickle=False) as f:
            labels = [np.asarray(f[k]) for k in ("y_train", "y_test")]
            names = np.asarray(f["class_names"]) if "class_names" in f.files else None
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"data.dataset: {name!r} is not a readable .npz file ({type(e).__name__}: {e})") from None
    if len(shape) == 3:  # N×H×W: grey images without their channel axis
        shape = (*shape, 1)
    if len(shape) == 4 and shape[3] not in (1, 3) and shape[1] in (1, 3):
        raise UsageError(
            f"data.dataset: {name!r}: x_train has shape {tuple(shape)}, channels first (N×C×H×W); "
            "save the images channels last: x.transpose(0, 2, 3, 1)"
        )
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise UsageError(
            f"data.dataset: {name!r}: x_train has shape {tuple(shape)}; expected uint8 images N×H×W×C with C = 1 or 3 (or N×H×W grey)"
        )
    if any(y.ndim != 1 or (y.size and y.dtype.kind not in "iu") for y in labels):
        raise UsageError(f"data.dataset: {name!r}: y_train and y_test must be 1-D integer labels")
    top = max((int(y.max()) for y in labels if y.size), default=0)
    if names is None and labels[0].size and int(labels[0].min()) == 1 and not (labels[1] == 0).any():
        raise UsageError(
            f"data.dataset: {name!r}: the labels run from 1 to {top}; the first class is label 0: save y - 1"
        )
    if names is None:
        classes = tuple(str(i) for i in range(top + 1))
    else:
        if names.ndim != 1 or names.dtype.kind != "U":
            raise UsageError(
                f"data.dataset: {name!r}: class_names must be a 1-D array of strings, got {names.dtype} of shape {names.shape}"
            )
        classes = tuple(str(c) for c in names)
        if len(set(classes)) != len(classes) or top >= len(classes):
            why = (
                "holds a name twice"
                if len(set(classes)) != len(classes)
                else f"names {len(classes)} classes but the labels reach {top}"
            )
            raise UsageError(f"data.dataset: {name!r}: class_names {why}")
    return classes, (int(shape[3]), int(shape[1]), int(shape[2]))


def _listing(name: str, root: Path) -> tuple[dict[str, dict[str, list[Path]]], bool]:
    """The image files by part ("all", or "train" and "test") and class, sorted; and whether the
    folder names its parts."""
    if not root.is_dir():
        raise UsageError(
            f"data.dataset: {name!r}: {str(root)!r} is not a folder; expected one subfolder of images per class"
        )
    named = (root / "train").is_dir() and (root / "test").is_dir()
    if not named and ((root / "train").is_dir() or (root / "test").is_dir()):
        have, lack = ("train", "test") if (root / "train").is_dir() else ("test", "train")
        raise UsageError(
            f"data.dataset: {name!r} has a {have}/ folder but no {lack}/; give both, or one subfolder of images per class"
        )
    parts = {"train": root / "train", "test": root / "test"} if named else {"all": root}
    files = {part: _classes(name, folder) for part, folder in parts.items()}
    if named:
        extra = sorted(set(files["test"]) - set(files["train"]))
        if extra:
            raise UsageError(
                f"data.dataset: {name!r}: test/{extra[0]} is a class with no train/{extra[0]} folder; every test class needs training images"
            )
    return files, named


def _classes(name: str, folder: Path) -> dict[str, list[Path]]:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not _skipped(p.name))
    if not subfolders:
        raise UsageError(
            f"data.dataset: {name!r}: {str(folder)!r} has no class subfolders; expected one subfolder of images per class"
        )
    out, inside = {}, folder.resolve()
    for sub in subfolders:
        images = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(_skipped(part) for part in p.relative_to(sub).parts)
        )
        outside = next((p for p in images if not p.resolve().is_relative_to(inside)), None)
        if outside is not None:
            raise UsageError(
                f"data.dataset: {name!r}: {str(outside)!r} is a link to {str(outside.resolve())!r}, outside the folder; "
                "copy the image in or remove the link"
            )
        if not images:
            raise UsageError(
                f"data.dataset: {name!r}: the class folder {str(sub)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        out[sub.name] = images
    return out


def _skipped(part: str) -> bool:
    return part.startswith(".") or part in SKIPPED


def _open(name: str, path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # past the limit is refused below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        im = None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UsageError(
            f"data.dataset: {name!r}: cannot read the image {str(path)!r} ({type(e).__name__}: {e}); remove or replace it"
        ) from None
    limit = Image.MAX_IMAGE_PIXELS
    if im is None or (limit and im.width * im.height > limit):  # from its header alone: nothing decoded yet
        size = "" if im is None else f" ({im.width}×{im.height})"
        if im is not None:
            im.close()
        raise UsageError(
            f"data.dataset: {name!r}: the image {str(path)!r} has more pixels{size} than the limit of "
            f"{limit:,} (PIL's guard against decompression bombs); remove it or shrink it"
        )
    return im


def _header(name: str, root: Path, files, image_size: int) -> tuple[int, tuple[int, int]]:
    """(channels, (height, width)) the images are used at, from their headers alone."""
    if image_size and not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise UsageError(
            f"data.image_size: {image_size} is not allowed; expected 0 (as they are) or a size from 1 to {MAX_IMAGE_SIZE}"
        )
    sizes: dict[tuple[int, int], Path] = {}
    grey = True
    for by_class in files.values():
        for paths in by_class.values():
            for p in paths:
                with _open(name, p) as im:
                    if im.mode in REFUSED_MODES:
                        raise UsageError(
                            f"data.dataset: {name!r}: {str(p)!r} has {'32-bit' if im.mode == 'I' else 'floating-point'} pixels "
                            f"(mode {im.mode}); save the images with 8 or 16 bits per channel"
                        )
                    sizes.setdefault((im.height, im.width), p)
                    grey = grey and im.mode in GREY_MODES
    if len(sizes) > 1 and not image_size:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise UsageError(
            f"data.dataset: {name!r}: the images have {len(sizes)} sizes ({a[0]}×{a[1]} in {pa.relative_to(root)}, "
            f"{b[0]}×{b[1]} in {pb.relative_to(root)}); set data.image_size = S to resize every image to S×S"
        )
    return (1 if grey else 3), ((image_size, image_size) if image_size else next(iter(sizes)))


def _decode(name, files, classes, channels, size, image_size, named) -> dict[str, np.ndarray]:
    """Decode every image into uint8 arrays (resized when `image_size` is set), labels by class order."""
    from PIL import Image

    label = {c: i for i, c in enumerate(classes)}
    parts = {}
    for part, by_class in files.items():
        xs, ys = [], []
        for c, paths in sorted(by_class.items()):
            for p in paths:
                with _open(name, p) as im:
                    try:
                        if im.mode in DEEP_MODES:  # PIL's convert("L") would clip 16-bit values at 255
                            im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8), "L")
                        im = im.convert("L" if channels == 1 else "RGB")
                        if image_size and (im.height, im.width) != size:
                            im = im.resize((size[1], size[0]), Image.BILINEAR)
                        a = np.asarray(im, dtype=np.uint8)
                    except (OSError, ValueError) as e:
                        raise UsageError(
                            f"data.dataset: {name!r}: cannot decode the image {str(p)!r} ({type(e).__name__}: {e}); remove or replace it"
                        ) from None
                xs.append(a.reshape(size[0], size[1], channels))
                ys.append(label[c])
        parts[part] = (np.stack(xs), np.asarray(ys, dtype=np.uint8))
    if named:
        (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    else:
        x, y = parts["all"]
        rng = np.random.default_rng(TEST_SEED)
        test = []
        for c in range(len(classes)):
            idx = np.flatnonzero(y == c)
            if len(idx) < 2:
                raise UsageError(
                    f"data.dataset: {name!r}: class {classes[c]!r} has {len(idx)} image; holding out a test set needs at least 2 per class "
                    "(or give the folder train/ and test/ subfolders)"
                )
            test.append(idx[rng.permutation(len(idx))][: max(1, int(round(len(idx) * TEST_SHARE)))])
        mask = np.zeros(len(y), dtype=bool)
        mask[np.concatenate(test)] = True
        x_train, y_train, x_test, y_test = x[~mask], y[~mask], x[mask], y[mask]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def check_classes(name: str, count: int) -> None:
    if count < 2:
        raise UsageError(
            f"data.dataset: {name!r} has {count} class; a classifier needs at least 2 (one subfolder of images per class)"
        )
    if count > 256:
        raise UsageError(f"data.dataset: {name!r} has {count} classes; labels are stored as uint8, so at most 256")


def npz_bytes(arrays: dict[str, np.ndarray], keys: tuple[str, ...]) -> bytes:
    """An npz file's bytes that depend on the arrays alone (fixed member times), so the same
    arrays always hash alike."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for k in keys:
            info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[k]), allow_pickle=False)
    return buffer.getvalue()
