"""`verify` (harness/running/verify.py): re-trained in a scratch store, a finished run's ledger is
bit-identical on the same platform (exit 0); a stored ledger altered on purpose fails naming its
run (exit 1); a run recorded on another platform is judged by the TOST against the margin; runs
recorded before the ledger are refused in one line; the experiment's own store is never written.
Each test re-checks a copy of the shared `trained` project (tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from mlflow import MlflowClient

from tests.helpers import TINY, copy_of, run_cli


def _ledgers(work) -> dict:
    """run id -> the stored predictions.npz file of each seed run."""
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    eid = client.get_experiment_by_name("default").experiment_id
    runs = client.search_runs([eid], "tags.`harness.role` = 'seed'")
    return {
        r.info.run_id: work / "mlartifacts" / "default" / r.info.run_id / "artifacts" / "predictions.npz" for r in runs
    }


def _state(work) -> dict:
    """Every file under the project folder with its content's hash; SQLite's shared-memory index
    and an empty write-ahead log, which any reader of a WAL store may leave, hold no data."""
    return {
        str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(work.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


def test_a_run_re_trained_on_the_same_platform_is_bit_identical_and_the_store_is_untouched(trained, tmp_path):
    data, work = trained[0], copy_of(trained, tmp_path)
    # the first command to read a moved store points its artifacts at their new place (report does too)
    assert run_cli("report", cwd=work).returncode == 0
    before = _state(work)
    out = run_cli("verify", "--runs", "2", "--json", cwd=work, data=data)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    assert result["ok"] and "every class probability bit-identical" in result["line"]
    assert len(result["runs"]) == 2 and all(r["identical"] and r["same_platform"] for r in result["runs"])
    assert all(v == 0 for r in result["runs"] for v in r["deltas"].values())
    assert _state(work) == before  # no byte of the store (its WAL too), no artifact, no new file in the project


def test_a_stored_ledger_altered_on_purpose_fails_naming_its_run(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    run_id, path = sorted(_ledgers(work).items())[0]
    with np.load(path) as f:
        arrays = dict(f)
    arrays["probs"] = arrays["probs"].copy()
    arrays["probs"][0, 0] = np.nextafter(arrays["probs"][0, 0], np.float16(1))  # one probability, one float16 step
    np.savez_compressed(path, **arrays)
    out = run_cli("verify", "--runs", "4", cwd=work, data=trained[0])  # every run of the four
    assert out.returncode == 1
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("verify: FAILED: on the same platform the re-trained ledger differs") and run_id in last


def test_a_run_from_another_platform_is_judged_by_the_tost_against_the_margin(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    for run_id in _ledgers(work):
        client.set_tag(run_id, "harness.env.device", "NVIDIA H100 80GB HBM3")  # as if trained on a card
    out = run_cli("verify", "--runs", "1", "--json", cwd=work, data=trained[0])
    result = json.loads(out.stdout)
    (run,) = result["runs"]
    assert not run["same_platform"] and run["differs"] == ["device: NVIDIA H100 80GB HBM3 → cpu (x86_64)"]
    # the same bits here: no difference on any image, inside any margin
    assert result["tost"]["delta"] == 0 and result["tost"]["p"] == 0 and result["ok"] and out.returncode == 0
    assert "whose bits are not expected to match (device: NVIDIA H100 80GB HBM3 → cpu (x86_64))" in result["line"]
    assert "within ±0.5 points (TOST p 0)" in result["line"]


def test_runs_recorded_before_the_ledger_are_refused_in_one_line(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    for path in _ledgers(work).values():
        with np.load(path) as f:
            np.savez_compressed(path, **{k: f[k] for k in ("labels", "selected", "last")})
    out = run_cli("verify", cwd=work, data=trained[0])
    assert out.returncode == 2 and "stored class probabilities (its runs were recorded before the ledger)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert (
        run_cli("verify", "--runs", "0", cwd=work)
        .stderr.strip()
        .endswith("expected a whole number of runs, at least 1")
    )


def test_a_fused_run_is_not_held_to_its_bits_and_a_run_on_another_split_fails_named(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    ids = sorted(_ledgers(work))
    for run_id in ids:
        client.set_tag(run_id, "harness.fused", "2")  # as if trained in a fused group of two
    result = json.loads(run_cli("verify", "--runs", "1", "--json", cwd=work, data=trained[0]).stdout)
    assert result["runs"][0]["differs"] == ["trained in a fused group of 2, re-trained alone"] and "tost" in result
    for run_id in ids:
        client.set_tag(run_id, "harness.split_fingerprint", "another")
    out = run_cli("verify", "--runs", "1", cwd=work, data=trained[0])
    assert out.returncode == 1
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("verify: FAILED: ") and "re-trained on other data: harness.split_fingerprint" in last


def test_a_run_with_a_pinned_source_re_trains_with_it_and_the_data_and_device_can_be_named(tmp_path, data_dir):
    # seeds.order pinned: the run's [seeds] table keeps it, and each source draws from its own stream
    proc = run_cli(
        "run", "--variants", "dropout", "--seeds", "1", *TINY, "--set", "seeds.order=0", cwd=tmp_path, data=data_dir
    )
    assert proc.returncode == 0, proc.stderr
    out = run_cli("verify", "--runs", "1", "--data-dir", str(data_dir), "--device", "cpu", "--json", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert out.returncode == 0 and result["runs"][0]["identical"], result["line"]
    bad = run_cli("verify", "--margin", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("expected a positive number of points")
