"""The tests' shared helpers (plain functions and constants; the fixtures, the CLI runners and a
free port are in conftest.py): small tensors on the CPU, the one-line refusal contract, networks and data for the
engine's and the fused loop's tests, user component files and image folders, fake runs as the
store gives them back, and the report's form checks. No test file imports another."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from harness.data import loading
from harness.data.datasets import CIFAR10_CLASSES
from harness.tracking.readback import SeedRun
from harness.training import engine
from harness.variants import registry
from tests import report_tables
from tests.conftest import make_arrays

SHAPE = (3, 16, 16)  # the fused loop's tests: images small enough to train eight LeNets in seconds


def tiny_tensors(n_train: int, n_test: int, split: str = "prefix", ratio: float = 0.8) -> loading.DeviceData:
    """Synthetic CIFAR-shaped data (conftest.make_arrays) checked, split and on the CPU, as the runner holds it."""
    a = loading.check(make_arrays(n_train, n_test), "synthetic")
    return loading.to_device(a, loading.make_split(a.y_train, split, ratio, 0), torch.device("cpu"))


def check_refusal(work, proc, fragment, allowed_files):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert {p.name for p in work.iterdir()} == allowed_files  # no store, checkpoint or report


class Exploding(nn.Module):
    def __init__(self, at_step: int):
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)
        self.calls, self.at_step = 0, at_step

    def forward(self, x):
        self.calls += self.training
        out = self.lin(x.flatten(1))
        return out * float("nan") if self.training and self.calls >= self.at_step else out


def arrays(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose mean colour depends on the class (learnable in a few epochs), channels-last as the harness keeps them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    base = (y[:, None, None, None] * 23 + np.array([0, 60, 120])[None, :, None, None]) % 256
    x = np.clip(base + rng.normal(0, 60, size=(n, *SHAPE)), 0, 255).astype(np.uint8)
    return torch.from_numpy(x).contiguous(memory_format=torch.channels_last), torch.from_numpy(y).long()


def parts(variant: str):
    """The network builder, engine pieces and settings a shipped variant trains with."""
    v = registry.get(variant)
    change = v.change()
    train = {k: val for c in v.components for k, val in c.train.items()}
    pieces = engine.Pieces(
        **{
            f.name: getattr(change, f.name)
            for f in dataclasses.fields(engine.Pieces)
            if getattr(change, f.name) is not None
        }
    )
    return (lambda: change.build(SHAPE, 10)), pieces, train


WIDE = '''
"""LeNet with a wider first hidden layer (a user's own component, outside the package)."""
from torch import nn

from harness import Change, register


class WideNet(nn.Module):
    def __init__(self, image_shape, num_classes, hidden=240):
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(nn.Conv2d(c, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        side = lambda n: ((n - 4) // 2 - 4) // 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * side(h) * side(w), hidden), nn.ReLU(), nn.Linear(hidden, 84), nn.ReLU(),
                                  nn.Linear(84, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@register("{name}", hypothesis="Twice the hidden units raise accuracy without more overfitting.")
def wide(hidden: int = 240):
    return Change(architecture=WideNet, model={{"hidden": hidden}})
'''


def component_file(folder: Path, stem: str, name: str = "wide", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(WIDE.format(name=name) + extra)
    return path


def image_folder(
    root: Path, sizes=((16, 16),), per_class: int = 10, mode: str = "L", classes=("horizontal", "vertical")
) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            stripes = (np.arange(max(h, w)) % 4 < 2) * 200
            x = np.where(c == 0, stripes[:h, None], stripes[None, :w]) + rng.integers(0, 55, (h, w))
            img = Image.fromarray(x.astype(np.uint8), "L")
            (img.convert(mode) if mode != "L" else img).save(root / name / f"{i:03d}.png")
    return root


TEST_ACC = {"baseline": [60.0, 61.0, 59.5], "batchnorm": [64.0, 65.5, 63.0]}  # of 1,000 test images, 100 per class


def confusion(correct: int, per_class: int = 100) -> np.ndarray:
    """A 10-class confusion matrix with `correct` on its diagonal; each class's misses go to the next class."""
    right = [correct // 10 + (1 if c < correct % 10 else 0) for c in range(10)]
    cm = np.zeros((10, 10), dtype=np.int64)
    for c in range(10):
        cm[c, c], cm[c, (c + 1) % 10] = right[c], per_class - right[c]
    return cm


def fake_runs(device: str = "cpu (x86_64)") -> list[SeedRun]:
    runs = []
    for variant, accs in TEST_ACC.items():
        for i, (seed, acc) in enumerate(zip((2021, 2022, 2023), accs)):
            history = {
                "train_acc": [(e, 40.0 + 5 * e + i) for e in (1, 2, 3)],
                "val_acc": [(e, 38.0 + 4 * e + i) for e in (1, 2, 3)],
                "train_loss": [(e, 2.0 - 0.2 * e) for e in (1, 2, 3)],
                "val_loss": [(e, 2.1 - 0.15 * e) for e in (1, 2, 3)],
            }
            cm = confusion(round(acc * 10))
            runs.append(
                SeedRun(
                    f"{variant}{seed}",
                    f"p-{variant}",
                    variant,
                    seed,
                    "FINISHED",
                    1000 + len(runs),
                    {"train.epochs": "3", "train.select": "val_acc"},
                    {
                        "harness.baseline": "baseline",
                        "harness.env.device": device,
                        "harness.device": device,
                        "harness.command": "python -m harness run",
                        "harness.experiment": "fake",
                        "harness.env.torch": "2.14.1",
                    },
                    {
                        "test_acc": acc,
                        "best_val_acc": 50.0 + i,
                        "final_val_acc": 50.0 + i,
                        "final_val_loss": 1.65,
                        "min_val_loss": 1.65,
                        "min_val_loss_epoch": 3.0,
                        "final_gap_acc": 5.0,
                        "n_params": 62006.0,
                        "epoch_seconds_mean": 4.0,
                    },
                    history,
                    cm,
                    CIFAR10_CLASSES,
                )
            )
    runs.append(
        SeedRun(
            "bad",
            "p-batchnorm",
            "batchnorm",
            2024,
            "FAILED",
            2000,
            {"train.epochs": "3"},
            {
                "harness.error": "non-finite loss in batchnorm seed 2024: loss became nan at epoch 2, step 5",
                "harness.env.device": device,
                "harness.device": device,
            },
            {},
            {},
            None,
        )
    )
    return runs


def runs_from(
    correct: dict[str, dict[int, int]], images: int = 10_000, params: dict[str, dict[str, str]] | None = None
) -> list[SeedRun]:
    """Finished runs with these counts of correct test images (of `images`, a tenth per class)."""
    runs = []
    for variant, by_seed in correct.items():
        for seed, k in by_seed.items():
            acc = 100.0 * k / images
            runs.append(
                SeedRun(
                    f"{variant}{seed}",
                    f"p-{variant}",
                    variant,
                    seed,
                    "FINISHED",
                    1000 + len(runs),
                    {"train.epochs": "3", "train.select": "val_acc", **(params or {}).get(variant, {})},
                    {
                        "harness.baseline": "baseline",
                        "harness.split_fingerprint": "f1",
                        "harness.dataset": "cifar10:abc",
                    },
                    {"test_acc": acc},
                    {},
                    confusion(k, images // 10),
                    CIFAR10_CLASSES,
                )
            )
    return runs


BEFORE = Path(__file__).parent / "fixtures" / "reports-before-answer-first"


NUMBER = re.compile(r"(?<![\w.])[+−-]?\d[\d,]*(?:\.\d+)?%?")


def numbers(text: str) -> Counter:
    return Counter(m.group(0).replace("−", "-") for m in NUMBER.finditer(text))


def assert_form(md: str) -> None:
    found = report_tables.tables(md)
    assert found
    for t in found:
        assert len(t.header) <= 8, (t.heading, t.header)
        assert all(len(r) == len(t.header) for r in t.rows), (t.heading, t.header, [len(r) for r in t.rows])
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', md))
    targets = set(re.findall(r"\]\(#([^)]+)\)", md))
    assert targets and targets <= anchors, targets - anchors
    assert len(re.findall(r'<a id="([^"]+)"></a>', md)) == len(anchors)  # each anchor once


def assert_keeps_numbers(old: str, new: str, changed: frozenset[str] = frozenset()) -> None:
    """Every number of the old report appears at least as often in the new one, and each table
    row's numbers in a row of the new report that starts with the same name; `changed`: numbers a
    change of the statistics replaced on purpose (each named where it is passed)."""
    missing = {k: (n, numbers(new)[k]) for k, n in numbers(old).items() if numbers(new)[k] < n and k not in changed}
    assert not missing, missing
    rows: dict[str, Counter] = {}
    for t in report_tables.tables(new):
        for r in t.rows:
            rows.setdefault(r[0], Counter()).update(numbers(" | ".join(r[1:])))
    for t in report_tables.tables(old):
        for r in t.rows:
            lost = set(numbers(" | ".join(r[1:]))) - set(rows.get(r[0], Counter())) - changed
            assert not lost, (t.heading, r[0], lost)


# a fused member may stray from the reference this many times as far as the separate path's own float noise
NOISE_FACTOR = 10


def gap(a: dict, b: dict, skip=()) -> float:
    """The largest absolute difference between two state dicts' floating tensors (but `skip`)."""
    return max(
        ((a[n].double() - b[n].double()).abs().max().item() for n in a if a[n].is_floating_point() and n not in skip),
        default=0.0,
    )


def float_noise(runs: list[tuple[dict, dict]], skip=()) -> float:
    """The separate path's own float noise: the largest gap between two float orders of the same
    runs (pairs of state dicts), over all of them, or one rounding of the largest weight where
    they agree bit for bit."""
    noise = max(gap(a, b, skip) for a, b in runs)
    largest = max(v.abs().max().item() for a, _ in runs for n, v in a.items() if v.is_floating_point())
    return max(noise, torch.finfo(torch.float32).eps * largest)
