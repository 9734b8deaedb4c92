"""The report, from a fixed set of fake runs (as they come back from the store)."""
from __future__ import annotations

import numpy as np
import pytest

from harness import report, stats
from harness.datasets import CIFAR10_CLASSES
from harness.tracking import SeedRun

TEST_ACC = {"baseline": [60.0, 61.0, 59.5], "batchnorm": [64.0, 65.5, 63.0]}


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
            cm = np.eye(10, dtype=np.int64) * 8 + 1
            runs.append(SeedRun(
                f"{variant}{seed}", f"p-{variant}", variant, seed, "FINISHED", 1000 + len(runs),
                {"train.epochs": "3", "train.select": "val_acc"},
                {"harness.baseline": "baseline", "harness.env.device": device, "harness.device": device,
                 "harness.command": "python -m harness run", "harness.experiment": "fake", "harness.env.torch": "2.14.1"},
                {"test_acc": acc, "best_val_acc": 50.0 + i, "final_val_acc": 50.0 + i, "final_val_loss": 1.65,
                 "min_val_loss": 1.65, "min_val_loss_epoch": 3.0, "final_gap_acc": 5.0, "n_params": 62006.0,
                 "epoch_seconds_mean": 4.0},
                history, cm, CIFAR10_CLASSES,
            ))
    runs.append(SeedRun("bad", "p-batchnorm", "batchnorm", 2024, "FAILED", 2000, {"train.epochs": "3"},
                        {"harness.error": "non-finite loss in batchnorm seed 2024: loss became nan at epoch 2, step 5",
                         "harness.env.device": device, "harness.device": device}, {}, {}, None))
    return runs


@pytest.fixture
def text(tmp_path):
    return report.write(fake_runs(), "fake", tmp_path).read_text(), tmp_path


def test_statistics_agree_with_the_runs(text):
    md, _ = text
    s = stats.summarize(TEST_ACC["batchnorm"])
    assert f"| batchnorm | test acc (selected epoch) | 3 | {s.mean:.2f} ± {s.std:.2f} | [{s.ci_low:.2f}, {s.ci_high:.2f}] |" in md
    c = stats.compare_all(dict(zip((2021, 2022, 2023), TEST_ACC["baseline"])), {"batchnorm": dict(zip((2021, 2022, 2023), TEST_ACC["batchnorm"]))})["batchnorm"]
    row = next(line for line in md.splitlines() if line.startswith("| batchnorm | 3 |"))
    assert f"{c.diff_mean:+.2f}" in row and f"[{c.ci_low:.2f}, {c.ci_high:.2f}]" in row
    assert f"{c.t_p:.3f}" in row and f"±{c.detectable:.2f}" in row and c.verdict in row
    assert "| baseline | 3/3 |" in md and "| batchnorm | 3/4 |" in md


def test_plots_and_captions(text):
    md, folder = text
    for png in ("learning_curves.png", "test_accuracy.png", "baseline_difference.png", "confusion_matrices.png"):
        assert (folder / png).stat().st_size > 1000
        i = md.index(f"({png})")
        caption = md[i:].split("\n\n")[1]
        assert caption.startswith("*") and caption.endswith(".*")


def test_failed_run_shown_without_a_number(text):
    md, _ = text
    assert "## Runs that did not finish" in md
    assert "| batchnorm | 2024 | FAILED | non-finite loss in batchnorm seed 2024" in md


def test_per_class_table(text):
    md, _ = text
    # 9 right of 18 predictions per class -> precision = recall = 50%
    assert "| airplane | 50.0 / 50.0 / 50.0 | 50.0 / 50.0 / 50.0 |" in md


def test_single_seed_says_no_test_is_possible(tmp_path):
    runs = [r for r in fake_runs() if r.seed == 2021]
    md = report.write(runs, "fake", tmp_path).read_text()
    assert "no test possible (fewer than 2 paired seeds)" in md


def test_mixed_devices_are_warned_about(tmp_path):
    runs = fake_runs()
    runs[0].tags["harness.env.device"] = "NVIDIA H100"
    md = report.write(runs, "fake", tmp_path).read_text()
    assert "**Warning:** the runs compared here differ in device" in md


def test_report_is_deterministic(tmp_path):
    a = report.write(fake_runs(), "fake", tmp_path / "a")
    b = report.write(fake_runs(), "fake", tmp_path / "b")
    for name in ("report.md", "learning_curves.png", "confusion_matrices.png"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
