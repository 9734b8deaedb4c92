"""One seed per source of randomness (`[seeds]`: init, order, dropout, augment, and the split
through `data.split_seed`; harness/training/settings.py's Sources, resolved by
harness/settings/config.py). By default every source follows the run's seed and changes nothing:
the run keys and configuration hashes are the fixed values below, those of runs with one seed for
everything, so a store's finished runs keep their keys, and the engine's tutorial equality
(tests/training/test_engine.py) holds. A pinned source draws the same in every run, the others go
on varying with the run's seed, and a pinned run resumes bit for bit from its checkpoint."""

from __future__ import annotations

import pytest
import tomllib
import torch
from mlflow import MlflowClient

from harness import variants
from harness.base.errors import UsageError
from harness.settings import config
from harness.settings.experiment_file import load_experiment
from harness.training import engine
from harness.training.settings import Sources
from tests.helpers import run_cli, snapshot_keeper, split_settings


def _train(d, seed, sources=Sources(), name="baseline", epochs=2, seen=None, on_progress=lambda p: None, **kw):
    """Train; `seen` collects the initial weights and each batch's draw of the augment generator."""
    settings, runtime = split_settings(epochs=epochs, batch_size=64, **kw)
    seen = {} if seen is None else seen
    model_build = variants.get(name).build

    def build():
        model = model_build()
        seen["init"] = [p.detach().clone() for p in model.parameters()]
        return model

    def transform(xb, generator):
        seen.setdefault("augment", []).append(torch.rand(1, generator=generator).item())
        return xb

    pieces = engine.Pieces(transform=transform)
    model, result = engine.train(
        build,
        d.x_train,
        d.y_train,
        d.x_val,
        d.y_val,
        settings,
        seed,
        runtime=runtime,
        pieces=pieces,
        sources=sources,
        on_progress=on_progress,
    )
    return model, result, seen


def _weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_default_keys_and_hashes_are_those_of_before_the_sources(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    default = load_experiment("default", seeds=(1, 2))
    tutorial = load_experiment("tutorial")
    assert (
        config.resolve(default, "baseline", 1).key("d", "s") == "98b8dedeef710a03-1"
        and config.config_hash(default) == "2f5d7109cb67"
    )
    assert (
        config.resolve(tutorial, "baseline", 2021).key("d", "s") == "4f581084f3102179-2021"
        and config.config_hash(tutorial) == "284a31477e57"
    )
    assert default.sources == Sources() and "seeds.init" not in config.resolve(default, "baseline", 1).flat()


def test_the_default_sources_train_what_the_engine_trained_without_them(tensors):
    torch.set_num_threads(1)
    settings, runtime = split_settings(epochs=2, batch_size=64)
    plain = engine.train(
        variants.get("dropout").build,
        tensors.x_train,
        tensors.y_train,
        tensors.x_val,
        tensors.y_val,
        settings,
        3,
        runtime=runtime,
    )
    explicit = engine.train(
        variants.get("dropout").build,
        tensors.x_train,
        tensors.y_train,
        tensors.x_val,
        tensors.y_val,
        settings,
        3,
        runtime=runtime,
        sources=Sources(),
    )
    assert _equal(_weights(plain[0]), _weights(explicit[0]))


def test_every_source_pinned_makes_the_run_seed_irrelevant(tensors):
    pinned = Sources(init=5, order=6, dropout=7, augment=8)
    a, b = _train(tensors, 1, pinned, "dropout"), _train(tensors, 2, pinned, "dropout")
    assert _equal(_weights(a[0]), _weights(b[0])) and a[2]["augment"] == b[2]["augment"]


@pytest.mark.parametrize("source", ["init", "order", "dropout", "augment"])
def test_one_source_varies_and_the_others_stay_pinned(tensors, source):
    """Every source pinned but `source`, which follows the run's seed: two seeds differ, and only in it."""
    pinned = Sources(**{s: 11 for s in ("init", "order", "dropout", "augment") if s != source})
    a, b = _train(tensors, 1, pinned, "dropout"), _train(tensors, 2, pinned, "dropout")
    assert _equal(a[2]["init"], b[2]["init"]) == (source != "init")
    assert (a[2]["augment"] == b[2]["augment"]) == (source != "augment")
    if source in ("init", "order", "dropout"):
        assert not _equal(_weights(a[0]), _weights(b[0]))
    else:  # the transform here draws but changes nothing: the weights cannot tell
        assert _equal(_weights(a[0]), _weights(b[0]))
    if source == "dropout":  # without dropout in the model the dropout stream changes nothing either
        c, d = _train(tensors, 1, pinned, "baseline"), _train(tensors, 2, pinned, "baseline")
        assert _equal(_weights(c[0]), _weights(d[0]))


def test_a_pinned_run_resumes_bit_for_bit(tensors):
    pinned = Sources(order=4, augment=9)
    whole, _, _ = _train(tensors, 1, pinned, "dropout", epochs=3)
    on_progress, kept = snapshot_keeper(1)
    _train(tensors, 1, pinned, "dropout", epochs=1, on_progress=on_progress)
    settings, runtime = split_settings(epochs=3, batch_size=64)
    resumed, _ = engine.train(
        variants.get("dropout").build,
        tensors.x_train,
        tensors.y_train,
        tensors.x_val,
        tensors.y_val,
        settings,
        1,
        resume=kept["snap"],
        runtime=runtime,
        sources=pinned,
        pieces=engine.Pieces(transform=lambda xb, g: (torch.rand(1, generator=g), xb)[1]),
    )
    assert {"order", "data", "torch"} <= set(kept["snap"]["rng"])  # every source's generator state is in the checkpoint
    assert _equal(_weights(whole), _weights(resumed))


def test_the_seeds_table_in_a_file_and_through_set(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    cfg = load_experiment("default", sets=["seeds.order=5", "seeds.init=7"], seeds=(1, 2))
    assert cfg.seeds == (1, 2) and cfg.sources == Sources(init=7, order=5)
    spec = config.resolve(cfg, "baseline", 1)
    assert spec.flat()["seeds.order"] == 5 and spec.key("d", "s") != config.resolve(
        load_experiment("default", seeds=(1, 2)), "baseline", 1
    ).key("d", "s")
    # the configuration artifact rebuilds the same sources
    again = config.from_table(tomllib.loads(config.to_toml(cfg)))
    assert again.sources == cfg.sources and again.seeds == cfg.seeds
    path = tmp_path / "e.toml"
    path.write_text('[seeds]\nruns = 3\ndropout = 0\nsplit = "run"\n')
    cfg = load_experiment(str(path))
    assert cfg.seeds == (2021, 2022, 2023) and cfg.sources == Sources(dropout=0) and cfg.data.split_seed == "per_seed"


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("seeds.bogus=1", "seeds.bogus: unknown setting; allowed: runs, init, order, dropout, augment, split"),
        (
            "seeds.order=-1",
            'seeds.order: -1 is not allowed; expected "run" (follow each run\'s seed) or a seed from 0 to 2**32-1',
        ),
        ("seeds.init=true", "seeds.init: True is not allowed"),
        ("seeds.init='x'", "seeds.init: 'x' is not allowed"),
    ],
)
def test_bad_sources_are_one_line(assignment, message, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    with pytest.raises(UsageError) as e:
        load_experiment("default", sets=[assignment])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_the_split_source_and_data_split_seed_cannot_both_be_set(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    with pytest.raises(UsageError, match="seeds.split: 3 and data.split_seed 4 both set the split's seed; keep one"):
        load_experiment("default", sets=["seeds.split=3", "data.split_seed=4"])


def test_a_run_with_a_pinned_source_logs_it_and_trains_new_keys(tmp_path, data_dir):
    args = ("run", "--variants", "baseline", "--seeds", "2", "--epochs", "1", "--set", "train.batch_size=128")
    first = run_cli(*args, "--set", "seeds.order=5", cwd=tmp_path, data=data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(*args, "--set", "seeds.order=5", cwd=tmp_path, data=data_dir)
    assert again.returncode == 0 and again.stdout.count("skip ") == 2  # the same pinned runs are found again
    other = run_cli(*args, cwd=tmp_path, data=data_dir)
    assert other.returncode == 0 and "skip " not in other.stdout  # the default sources are other runs
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    seeds = client.search_runs([exp.experiment_id], "tags.`harness.role` = 'seed'")
    logged = sorted(r.data.params.get("seeds.order", "–") for r in seeds)
    assert logged == ["5", "5", "–", "–"]
