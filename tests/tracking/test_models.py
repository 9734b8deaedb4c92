"""What a seed run holds in MLflow besides numbers: its model (loaded in a fresh process, it
predicts what the run logged), its data as dataset inputs with the split's digests, and
`promote`, which registers the best seed run by validation."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from mlflow import MlflowClient

from harness.tracking import models
from tests.helpers import fresh_store, run_cli, write_npz


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    work = tmp_path_factory.mktemp("models")
    fresh_store(work)
    data = write_npz(work / "data")
    proc = run_cli(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--set",
        "train.batch_size=64",
        cwd=work,
        data=data,
    )
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("default").experiment_id], "tags.`harness.role` = 'seed'")
    return work, data, client, runs


def test_every_seed_run_records_its_data_as_datasets_with_the_split_fingerprint(store):
    work, data, _, runs = store
    with np.load(data / "cifar10.npz") as f:
        test_hash = models.digest_of_test_set(f["x_test"], f["y_test"])
    assert len(runs) == 4
    for r in runs:
        inputs = {
            d.dataset.name: (d.dataset.digest, [t.value for t in d.tags if t.key == "mlflow.data.context"])
            for d in r.inputs.dataset_inputs
        }
        split = r.data.tags["harness.split_fingerprint"]
        assert inputs == {
            "cifar10-train": (split, ["training"]),
            "cifar10-val": (split, ["validation"]),
            "cifar10-test": (test_hash, ["test"]),
        }
    assert len({r.data.tags["harness.split_fingerprint"] for r in runs}) == 1  # every variant used the same split


def test_the_logged_model_loads_in_a_fresh_process_and_predicts_what_the_run_logged(store):
    work, data, client, runs = store
    run = runs[0]
    script = f"""
import numpy as np, torch, mlflow
mlflow.set_tracking_uri("sqlite:///{work / "mlflow.db"}")
model = mlflow.pytorch.load_model("runs:/{run.info.run_id}/model")
with np.load("{data / "cifar10.npz"}") as f:
    x, y = f["x_test"][:64], f["y_test"][:64]
with torch.inference_mode():
    pred = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
np.save("pred.npy", pred)
print(type(model).__name__, 100.0 * (pred == y).mean())
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    logged = np.load(client.download_artifacts(run.info.run_id, "predictions.npz", str(work)))
    pred = np.load(work / "pred.npy")
    assert out.stdout.startswith("LeNet ")
    assert np.array_equal(pred, logged["selected"][:64])  # the selected epoch's weights
    assert float(out.stdout.split()[1]) == pytest.approx(
        100.0 * (logged["selected"][:64] == logged["labels"][:64]).mean()
    )


def test_promote_registers_the_best_run_by_validation_with_the_verdict(store):
    work, _, client, runs = store
    proc = run_cli("promote", "--experiment", "default", "--variant", "dropout", "--name", "lenet-dropout", cwd=work)
    assert proc.returncode == 0, proc.stderr
    dropout = [r for r in runs if r.data.tags["harness.variant"] == "dropout"]
    best = max(dropout, key=lambda r: (r.data.metrics["selected_val_acc"], -int(r.data.tags["harness.seed"])))
    version = client.get_model_version("lenet-dropout", "1")
    assert version.run_id == best.info.run_id
    assert version.tags["harness.verdict"] in ("better", "worse", "equivalent", "inconclusive")
    assert (
        version.tags["harness.paired_delta_test_acc"].endswith("(2 pairs)")
        and version.tags["harness.variant"] == "dropout"
    )
    assert proc.stdout.startswith("registered lenet-dropout version 1: run " + best.info.run_id)
    script = (
        f"import mlflow; mlflow.set_tracking_uri('sqlite:///{work / 'mlflow.db'}'); "
        "print(type(mlflow.pytorch.load_model('models:/lenet-dropout/1')).__name__)"
    )
    loaded = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "LeNet", loaded.stderr[-2000:]
    again = run_cli("promote", "--experiment", "default", "--variant", "baseline", "--name", "lenet-dropout", cwd=work)
    assert again.returncode == 0 and "version 2" in again.stdout and "verdict reference" in again.stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (
            ["--variant", "batchnorm", "--name", "m"],
            "--variant: 'batchnorm' has no finished run in experiment 'default'; its variants: baseline, dropout",
        ),
        (["--variant", "dropuot", "--name", "m"], "did you mean 'dropout'"),
        (["--variant", "dropout", "--name", "a/b"], "--name: 'a/b' is not allowed"),
        (["--variant", "dropout", "--name", ".."], "--name: '..' is not allowed"),
    ],
)
def test_promote_refuses_bad_names_and_unknown_variants(store, args, fragment):
    proc = run_cli("promote", "--experiment", "default", *args, cwd=store[0])
    assert proc.returncode == 2 and fragment in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_promote_of_an_unknown_experiment_exits_2(store):
    proc = run_cli("promote", "--experiment", "nope", "--variant", "dropout", "--name", "m", cwd=store[0])
    assert proc.returncode == 2 and "no experiment named 'nope'" in proc.stderr


def test_a_model_logged_before_the_move_into_layers_still_loads_and_predicts_as_then(tmp_path):
    """tests/fixtures/model-before-layers.tar.gz: the `model` artifact of a `digits` baseline run
    logged at commit e220f8a (its code copy of `variants/` imports `harness.errors`), two test
    images and the logits that code's harness computed for them on the machine that made it.

    The loaded model must predict bit for bit as today's LeNet with its weights on this machine,
    and as then up to float rounding: a convolution's last bits depend on the CPU's vector unit,
    so logits made on one CPU are not bit-identical on another (CI's machine differs in them)."""
    import tarfile
    from pathlib import Path

    with tarfile.open(Path(__file__).parents[1] / "fixtures" / "model-before-layers.tar.gz") as tar:
        tar.extractall(tmp_path)
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
import numpy as np, torch, mlflow.pytorch
model = mlflow.pytorch.load_model("model")
images = torch.from_numpy(np.load("input.npy"))
from harness.variants.lenet import LeNet
today = LeNet(image_shape=tuple(images.shape[1:]), num_classes=model.fc3.out_features)
today.load_state_dict(model.state_dict())
with torch.inference_mode():
    logits = model(images).numpy()
    again = today.eval()(images).numpy()
then = np.load("expected_logits.npy")
print(type(model).__name__, np.array_equal(logits, again), np.allclose(logits, then, rtol=1e-5, atol=1e-5),
      np.array_equal(logits.argmax(1), then.argmax(1)))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["LeNet", "True", "True", "True"]


SELF_EDITING = '''
from pathlib import Path
from torch import nn
from harness import Change, register
from harness.variants.lenet import LeNet


class Edited(LeNet):
    """Rewrites its own file as it is built: the edit a user saves while the run trains."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        source = Path(__file__).read_text()
        Path(__file__).write_text(source.replace("return super().forward(x)", "return -super().forward(x)"))

    def forward(self, x):
        return super().forward(x)


@register("edited", hypothesis="The same LeNet; its file is edited while it trains.")
def edited():
    return Change(architecture=Edited)
'''


def test_a_component_file_edited_while_its_run_trains_gives_a_model_with_the_code_it_trained_with(tmp_path):
    """The model carries the code it trained with, not the file as edited during training (the edit
    negates every output): loaded in a fresh process, it predicts what the run logged."""
    fresh_store(tmp_path)
    data = write_npz(tmp_path / "data")
    (tmp_path / "edited_components.py").write_text(SELF_EDITING)
    flags = ["--variants", "edited", "--seeds", "1", "--epochs", "1", "--set", "train.batch_size=64"]
    proc = run_cli("run", "--components", "edited_components.py", *flags, cwd=tmp_path, data=data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "-super().forward(x)" in (tmp_path / "edited_components.py").read_text()  # the file was edited
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("default").experiment_id], "tags.`harness.role` = 'seed'")[
        0
    ]
    script = f"""
import numpy as np, torch, mlflow
model = mlflow.pytorch.load_model("runs:/{run.info.run_id}/model")
with np.load("{data / "cifar10.npz"}") as f:
    x = f["x_test"]
with torch.inference_mode():
    np.save("pred.npy", model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy())
"""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    logged = np.load(client.download_artifacts(run.info.run_id, "predictions.npz", str(tmp_path)))
    assert np.array_equal(np.load(elsewhere / "pred.npy"), logged["selected"])


def test_mlflow_3_opens_the_experiment_on_its_runs_and_each_parent_describes_its_verdict(store):
    """MLflow 3's UI opens the experiment on its runs, not on the GenAI traces overview ("No data
    available"), and each parent run's description states its verdict."""
    work, data, client, runs = store
    experiment = client.get_experiment_by_name("default")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'variant'")
    dropout = next(p for p in parents if p.data.tags["harness.variant"] == "dropout")
    note = dropout.data.tags["mlflow.note.content"]
    assert (
        note.startswith(f"{dropout.data.tags['harness.verdict']}: ")
        and "points of test accuracy against the baseline" in note
    )


def test_the_store_commands_default_to_the_experiment_run_defaults_to(store):
    """`report` and `export` need no --experiment: they default to "default", as `run` does."""
    work, data, client, runs = store
    exported = run_cli("export", "--format", "csv", cwd=work)
    named = run_cli("export", "--format", "csv", "--experiment", "default", cwd=work)
    assert exported.returncode == 0 and exported.stdout == named.stdout and "dropout" in exported.stdout
    compact = run_cli("export", "--format", "csv", "--table", "compact", cwd=work)
    assert (
        compact.returncode == 0 and compact.stdout.splitlines()[0] == "variant,diff_vs_baseline,ci_low,ci_high,verdict"
    )


def _by_hand(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """NLL, 15-bin ECE and Brier written out image by image (not the library's vector code)."""
    n, bins = len(labels), [[] for _ in range(15)]
    nll, brier = [], []
    for p, y in zip(probs.astype(float), labels):
        nll.append(-math.log(max(p[y], 2.0**-24)))
        brier.append(math.fsum((q - (c == y)) ** 2 for c, q in enumerate(p)))
        top = max(range(len(p)), key=lambda c: (p[c], -c))
        m = next(m for m in range(1, 16) if p[top] * 15 <= m)  # (m-1)/15 < confidence <= m/15
        bins[m - 1].append((p[top], top == y))
    ece = math.fsum(
        len(b) / n * abs(math.fsum(r for _, r in b) / len(b) - math.fsum(c for c, _ in b) / len(b)) for b in bins if b
    )
    return {"test_nll": math.fsum(nll) / n, "test_ece": ece, "test_brier": math.fsum(brier) / n}


def test_every_run_keeps_its_ledger_and_logs_calibration_recomputable_from_it(store):
    work, _, client, runs = store
    for run in runs:
        with np.load(client.download_artifacts(run.info.run_id, "predictions.npz", str(work / run.info.run_id))) as f:
            probs, labels, selected = f["probs"], f["labels"], f["selected"]
        assert probs.dtype == np.float16 and probs.shape == (len(labels), 10)
        # float16 keeps each probability to a relative 2^-11 (and 2^-25 absolute below its normal range)
        assert np.all(np.abs(probs.astype(float).sum(1) - 1) <= 2.0**-11 + 10 * 2.0**-25 + 1e-6)
        # the predicted class has the largest stored probability (rounding keeps the order, ties aside)
        assert np.array_equal(probs[np.arange(len(labels)), selected], probs.max(1))
        got, want = run.data.metrics, _by_hand(probs, labels)
        for key, value in want.items():  # float64 sums of N terms in another order: N·2^-52 relative at most
            assert got[key] == pytest.approx(value, rel=len(labels) * 2.0**-52, abs=1e-15), key
        truth = probs[np.arange(len(labels)), labels.astype(int)].astype(float)
        if truth.min() >= 2.0**-14:  # float16's normal range: the same NLL to the ledger's rounding (2^-11 relative)
            assert abs(got["test_nll"] - got["test_loss"]) <= 2.0**-10
    parents = client.search_runs([runs[0].info.experiment_id], "tags.`harness.role` = 'variant'")
    for p in parents:
        assert {"test_nll_mean", "test_ece_mean", "test_brier_mean"} <= set(p.data.metrics)
