"""Fused groups in the runner, through the CLI on a CPU with one thread (fault points in real processes): each member is
recorded as a separate run is (its key, its child run, its metrics and model), and a group
killed at any fault point resumes to the same bits as a group never interrupted."""

from __future__ import annotations

import pytest
import torch

from harness.running import fusing
from tests import faultkit
from tests.helpers import fresh_store, run_cli, run_process, write_npz

PAIRS = ("baseline,dropout", "11,12")  # one fused group of four: dropout p is per member


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "d")


def run(work, data, *extra, fault="", fuse="4", epochs=3, runner=run_process):
    return faultkit.run(
        work, data, PAIRS[0], *extra, seeds=PAIRS[1], fault=fault, epochs=epochs, fuse=fuse, runner=runner
    )


def _numbers(r: dict) -> dict:
    """A run's results without its run id, weights as lists (to compare with ==)."""
    out = {k: v for k, v in r.items() if k not in ("run_id", "weights")}
    out["weights"] = {part: {k: w.tolist() for k, w in r["weights"][part].items()} for part in ("last", "selected")}
    return out


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, data):
    """A fused group of four never interrupted: its working folder."""
    work = tmp_path_factory.mktemp("fused-ref")
    proc = run(work, data, runner=run_cli)
    assert proc.returncode == 0, proc.stderr
    assert "fused group of 4: baseline seed 11, baseline seed 12, dropout seed 11, dropout seed 12" in proc.stdout
    return work


@pytest.fixture(scope="module")
def reference(reference_store):
    return faultkit.results(reference_store)


def looks(work, fused: bool = True) -> dict:
    """What a run shows in MLflow besides its numbers, by (variant, seed): params (but train.fuse),
    artifact paths, tag names (but harness.fused*), metric names and dataset inputs."""
    c, out = faultkit.client(work), {}

    def files(run_id, path=None):
        return sorted(
            p for f in c.list_artifacts(run_id, path) for p in (files(run_id, f.path) if f.is_dir else [f.path])
        )

    for r in faultkit.seed_runs(work):
        pair = (r.data.tags["harness.variant"], int(r.data.tags["harness.seed"]))
        assert r.data.params["train.fuse"] == ("4" if fused else "off")  # how it ran, as the memory format is logged
        out[pair] = {
            "params": {k: v for k, v in r.data.params.items() if k != "train.fuse"},
            "artifacts": files(r.info.run_id),
            "metrics": sorted(r.data.metrics),
            "tags": sorted(
                k for k in r.data.tags if not k.startswith(("harness.fused", "mlflow.")) and k != "harness.started"
            ),
            "inputs": sorted((d.dataset.name, d.dataset.digest) for d in r.inputs.dataset_inputs),
        }
    return out


def _difference(a, b):
    """What differs between two values of `looks`: the differing keys of two dicts, else both."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    return a, b


def test_a_fused_group_records_each_member_as_a_separate_run_under_the_separate_runs_key(
    tmp_path, data, reference, reference_store
):
    alone = run(tmp_path, data, fuse="off", runner=run_cli)
    assert alone.returncode == 0, alone.stderr
    separate = faultkit.results(tmp_path)
    assert set(separate) == set(reference) and len(reference) == 4
    for pair, r in reference.items():
        for part in ("last", "selected"):  # the same LeNet state, member by member
            assert r["weights"][part].keys() == separate[pair]["weights"][part].keys()
        assert r["key"] == separate[pair]["key"]  # fusing is a runtime setting: a fused run stands for its key
        assert r["fused"] == "4" and separate[pair]["fused"] is None
        assert [s for s, _ in r["val_acc"]] == [1, 2, 3]
        # float noise only: the first epoch agrees to 1e-4 (later ones drift apart as any two float orders do; tests/training/test_fused.py)
        assert abs(r["train_loss"][0][1] - separate[pair]["train_loss"][0][1]) < 1e-4, pair
    fused_look, separate_look = looks(reference_store), looks(tmp_path, fused=False)
    differ = {
        (pair, field): _difference(one, separate_look[pair][field])
        for pair, look in fused_look.items()
        for field, one in look.items()
        if one != separate_look[pair][field]
    }
    # the same params, artifacts, tags (but the fused ones), inputs, metric names
    assert set(fused_look) == set(separate_look) and not differ, differ
    # no per-run figures unless train.run_figures asks for them (tests/cli/test_cli.py)
    assert not [a for look in fused_look.values() for a in look["artifacts"] if a.endswith(".png")]
    again = run(tmp_path, data, runner=run_cli)  # the same command fused: every key has finished
    assert again.returncode == 0 and again.stdout.count("already finished") == 4 and "TRAIN EPOCH" not in again.stdout


@pytest.mark.slow
# SIGTERM while recording: the members not yet recorded are KILLED, the checkpoint kept
@pytest.mark.parametrize(
    "fault,code",
    [
        ("step:20:KILL", -9),  # mid-epoch 2
        ("checkpoint:2:KILL", -9),  # half-way through writing the group's second checkpoint
        ("checkpointed:2:KILL", -9),  # after checkpoint 2, before any member's epoch 2 is logged
        ("logged:3:KILL", -9),  # every epoch logged, before the test set
        ("recorded:2:KILL", -9),  # two members recorded FINISHED, two not
        ("recorded:4:KILL", -9),  # every member recorded, the group's checkpoint not yet removed
        ("step:25:TERM", 143),  # SIGTERM mid-epoch 2
        (
            "recorded:1:TERM",
            143,
        ),
    ],
)
def test_a_fused_group_killed_and_restarted_equals_one_never_interrupted(tmp_path, data, reference, fault, code):
    killed = run(tmp_path, data, fault=fault)
    assert killed.returncode == code, killed.stderr[-2000:]
    again = run(tmp_path, data, runner=run_cli)
    assert again.returncode == 0, again.stderr[-2000:]
    got = faultkit.results(tmp_path)
    assert {p: _numbers(r) for p, r in got.items()} == {p: _numbers(r) for p, r in reference.items()}
    # the group's checkpoint is gone once all are recorded
    assert not list((tmp_path / "checkpoints" / "default").glob("*.pt"))
    if fault.startswith("recorded"):
        assert again.stdout.count("already finished") == int(fault.split(":")[1])


@pytest.mark.slow
def test_a_killed_group_resumes_as_that_group_whatever_fuse_says_next(tmp_path, data, reference):
    killed = run(tmp_path, data, fault="checkpointed:2:KILL")
    assert killed.returncode == -9
    again = run(tmp_path, data, fuse="off", runner=run_cli)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (
        "resume the fused group of baseline seed 11, baseline seed 12, dropout seed 11, dropout seed 12 after epoch 2"
        in again.stdout
    )
    assert {p: _numbers(r) for p, r in faultkit.results(tmp_path).items()} == {
        p: _numbers(r) for p, r in reference.items()
    }


def test_seeds_on_demand_fuse_each_rounds_new_seeds(tmp_path, data):
    fresh_store(tmp_path)
    proc = run_cli(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "auto",
        "--max-seeds",
        "6",
        "--epochs",
        "1",
        "--fuse",
        "8",
        "--set",
        "train.batch_size=64",
        "--set",
        "train.threads=1",
        cwd=tmp_path,
        data=data,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fused group of" in proc.stdout
    runs = [r for r in faultkit.seed_runs(tmp_path) if r.info.status == "FINISHED"]
    assert runs and all(r.data.tags.get("harness.fused") for r in runs)


def test_a_component_that_says_it_cannot_be_fused_trains_alone_and_one_with_its_own_learning_rate_fuses(tmp_path, data):
    (tmp_path / "alone.py").write_text(
        "from harness.variants.registry import Change, register\n\n\n"
        "@register('alone', hypothesis='A dropout that must train by itself.')\n"
        "def alone():\n    return Change(model={'dropout': 0.3}, fusable=False)\n\n\n"
        "@register('fast', hypothesis='Three times the learning rate.', train={'lr': 3e-3})\n"
        "def fast():\n    return Change()\n"
    )
    fresh_store(tmp_path)
    proc = run_cli(
        "run",
        "--components",
        "alone.py",
        "--variants",
        "baseline,alone,fast",
        "--seeds",
        "1,2",
        "--epochs",
        "1",
        "--fuse",
        "4",
        "--set",
        "train.batch_size=64",
        "--set",
        "train.threads=1",
        cwd=tmp_path,
        data=data,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fused group of 4: baseline seed 1, baseline seed 2, fast seed 1, fast seed 2" in proc.stdout, proc.stdout[
        -3000:
    ]
    lrs = {
        (r.data.tags["harness.variant"], r.data.tags.get("harness.fused")): r.data.params["train.lr"]
        for r in faultkit.seed_runs(tmp_path)
    }
    assert lrs == {("baseline", "4"): "0.001", ("fast", "4"): "0.003", ("alone", None): "0.001"}
    assert "== alone seed 1 (3/6)" in proc.stdout and "== alone seed 2 (4/6)" in proc.stdout, proc.stdout[-3000:]


def test_auto_fuses_only_a_size_measured_ten_percent_faster_per_member_and_never_on_a_cpu():
    from harness.training import engine

    cpu, shape, settings, runtime = torch.device("cpu"), (3, 32, 32), engine.TrainSettings(), engine.Runtime()
    assert fusing.decide("auto", cpu, shape, 10, settings, runtime)[0] == 1
    assert (
        fusing.decide("off", cpu, shape, 10, settings, runtime)[0] == 1
        and fusing.decide(8, cpu, shape, 10, settings, runtime)[0] == 8
    )
    assert fusing.choose({1: 1.0, 2: 1.9, 4: 3.0, 8: 8.0}) == 4  # 0.75 a member, the least, and under 0.9
    assert fusing.choose({1: 1.0, 2: 1.85, 4: 4.4, 8: 9.0}) == 1  # 0.925 a member: not 10% faster
    assert fusing.choose({1: 1.0, 2: 2.5, 4: 5.0, 8: 10.0}) == 1


def test_fuse_is_refused_in_one_line_when_it_is_not_off_auto_or_a_size(tmp_path, data):
    for bad in ("0", "65", "many"):
        proc = run_process("run", "--variants", "baseline", "--seeds", "1", "--fuse", bad, cwd=tmp_path, data=data)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "train.fuse" in proc.stderr, proc.stderr
    proc = run_process(
        "run",
        "--variants",
        "baseline",
        "--seeds",
        "1",
        "--fuse",
        "4",
        "--executor",
        "ray",
        "--ray-address",
        "auto",
        cwd=tmp_path,
        data=data,
    )
    assert proc.returncode == 2 and "train.fuse: 4 is only for the local executor" in proc.stderr, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
