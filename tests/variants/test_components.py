"""Components that compose, the engine's generic pieces, the augment, cosine, sgd and label
smoothing components, and the designs with their effects, on tiny synthetic data."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from harness import variants
from harness.base.errors import UsageError
from harness.data.datasets import get as dataset
from harness.running.assembly import assemble
from harness.settings import config, experiment_file
from harness.training import engine
from harness.variants import registry
from harness.variants.augment import PAD, crop_and_flip
from tests.helpers import fresh_store, run_cli, same_training, snapshot_keeper


def _spec(name, sets=()):
    cfg = experiment_file.load_experiment(None, [*sets, "train.epochs=3", "train.batch_size=32"], variants=(name,))
    return config.resolve(cfg, cfg.variants[0], 7)


def _train(d, spec, resume=None, keep_at=None):
    torch.set_num_threads(1)
    build, pieces = assemble(spec, dataset("cifar10"))
    on_progress, kept = snapshot_keeper(keep_at)
    model, result = engine.train(
        build, d.x_train, d.y_train, d.x_val, d.y_val, spec.train, spec.seed, on_progress, resume, pieces=pieces
    )
    return model, result, kept.get("snap")


# ---------------------------------------------------------------- composition


def test_composition_is_order_independent_and_canonically_named():
    assert variants.get("dropout+batchnorm").name == variants.get("batchnorm+dropout").name == "batchnorm+dropout"
    assert variants.get("baseline+dropout").name == "dropout" and variants.get("baseline").name == "baseline"
    cfg = experiment_file.load_experiment(None, variants=("baseline", "dropout+batchnorm", "augment+dropout+batchnorm"))
    assert cfg.variants == ("baseline", "batchnorm+dropout", "augment+batchnorm+dropout")
    a, b = (
        config.resolve(
            experiment_file.load_experiment(None, variants=(v,)),
            experiment_file.load_experiment(None, variants=(v,)).variants[0],
            1,
        )
        for v in ("dropout+batchnorm", "batchnorm+dropout")
    )
    assert a == b and a.key("d", "s") == b.key("d", "s")
    model = variants.get("batchnorm+dropout").build()
    assert isinstance(model.bn1, torch.nn.BatchNorm2d) and model.drop.p == 0.5


def test_a_composition_listed_twice_in_any_order_is_refused():
    with pytest.raises(UsageError, match="'batchnorm\\+dropout' is listed twice"):
        experiment_file.load_experiment(None, variants=("dropout+batchnorm", "batchnorm+dropout"))
    with pytest.raises(UsageError, match="names a component twice"):
        experiment_file.load_experiment(None, variants=("dropout+dropout",))
    with pytest.raises(UsageError, match="unknown component 'dropuot'"):
        experiment_file.load_experiment(None, variants=("batchnorm+dropuot",))


def test_parameters_and_training_settings_of_each_component_apply_in_compositions():
    spec = _spec("sgd+weight_decay+dropout", ["params.dropout.p=0.25", "params.sgd.lr=0.02"])
    assert spec.model_params == {"dropout.p": 0.25} and spec.train.lr == 0.02 and spec.train.weight_decay == 5e-4
    assert _spec("sgd").train.lr == 0.05 and _spec("baseline").train.lr == 1e-3


@pytest.fixture
def extra_components():
    """Components that clash with built-in ones, registered for one test."""
    added = []

    def add(name, make, train=None):
        registry.register(name, hypothesis=f"test component {name}", train=train)(make)
        added.append(name)

    yield add
    for name in added:
        registry._REGISTRY.pop(name)


@pytest.mark.parametrize(
    "setup,variant,fragment",
    [
        ("model", "batchnorm+no_bn", "components 'batchnorm' and 'no_bn' both set model.batchnorm, to True and False"),
        ("optimizer", "plain_sgd+sgd", "components 'plain_sgd' and 'sgd' both set optimizer, to SGD and nesterov_sgd"),
        (
            "train",
            "big_wd+weight_decay",
            "components 'big_wd' and 'weight_decay' both set train.weight_decay, to 0.01 and 0.0005",
        ),
    ],
)
def test_components_that_set_one_thing_to_different_values_do_not_compose(extra_components, setup, variant, fragment):
    extra_components("no_bn", lambda: registry.Change(model={"batchnorm": False}))
    extra_components("plain_sgd", lambda: registry.Change(optimizer=torch.optim.SGD))
    extra_components("big_wd", lambda: registry.Change(), train={"weight_decay": 1e-2})
    with pytest.raises(UsageError) as e:
        experiment_file.load_experiment(None, variants=(variant,))
    assert fragment in str(e.value)


def test_a_parameter_override_that_clashes_is_refused_through_the_cli_with_nothing_written(tmp_path, data_dir):
    proc = run_cli(
        "run", "--variants", "sgd+weight_decay", "--set", "params.sgd.weight_decay=0.001", cwd=tmp_path, data=data_dir
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "components 'sgd' and 'weight_decay' both set train.weight_decay, to 0.001 and 0.0005" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---------------------------------------------------------------- augment, cosine, sgd, label smoothing


def test_augment_crops_from_zero_padding_and_flips_half_the_images():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) % 251 + 1
    batch = x.repeat(200, 1, 1, 1).to(torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = crop_and_flip(batch, gen)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    again = crop_and_flip(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    padded = torch.nn.functional.pad(batch, (PAD,) * 4)
    flips = 0
    for i in range(len(batch)):  # each output is one of the 9 × 9 crops of the padded image, maybe mirrored
        found = [
            (dy, dx, f)
            for dy in range(2 * PAD + 1)
            for dx in range(2 * PAD + 1)
            for f in (False, True)
            if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, dy : dy + 32, dx : dx + 32]))
        ]
        assert found, i
        flips += found[0][2]
    assert 150 < flips < 250  # p = 0.5 of 400
    assert (out == 0).any()  # zero padding shows at the borders
    floats = crop_and_flip(batch.float() / 255, torch.Generator().manual_seed(0))
    assert floats.dtype == torch.float32 and torch.allclose(floats, out.float() / 255)


def test_evaluation_never_transforms(stratified_tensors):
    calls = []

    def counting(x, gen):
        calls.append(len(x))
        return x

    spec = _spec("baseline")
    build, _ = assemble(spec, dataset("cifar10"))
    engine.train(
        build,
        stratified_tensors.x_train,
        stratified_tensors.y_train,
        stratified_tensors.x_val,
        stratified_tensors.y_val,
        spec.train,
        1,
        pieces=engine.Pieces(transform=counting),
    )
    assert sum(calls) == 3 * len(stratified_tensors.y_train)  # every training image, every epoch; no validation image


def test_cosine_anneals_the_learning_rate_to_zero_over_the_run(stratified_tensors):
    seen = []
    spec = _spec("cosine")
    build, pieces = assemble(spec, dataset("cifar10"))
    engine.train(
        build,
        stratified_tensors.x_train,
        stratified_tensors.y_train,
        stratified_tensors.x_val,
        stratified_tensors.y_val,
        spec.train,
        1,
        lambda p: seen.append(p.snapshot["optimizer"]["param_groups"][0]["lr"]) if p.phase == "epoch" else None,
        pieces=pieces,
    )
    expected = [1e-3 * (1 + math.cos(math.pi * e / 3)) / 2 for e in (1, 2, 3)]
    assert seen == pytest.approx(expected) and seen[-1] == pytest.approx(0.0, abs=1e-12)


def test_sgd_uses_nesterov_momentum_at_its_own_learning_rate(stratified_tensors):
    _, _, snap = _train(stratified_tensors, _spec("sgd"), keep_at=1)
    group = snap["optimizer"]["param_groups"][0]
    assert group["nesterov"] and group["momentum"] == 0.9 and group["lr"] == 0.05
    assert all("momentum_buffer" in s for s in snap["optimizer"]["state"].values())


def test_label_smoothing_changes_the_training_loss_but_not_how_validation_is_measured(stratified_tensors):
    _, plain, _ = _train(stratified_tensors, _spec("baseline"))
    _, smooth, _ = _train(stratified_tensors, _spec("label_smoothing"))
    assert assemble(_spec("label_smoothing"), dataset("cifar10"))[1].loss().label_smoothing == 0.1
    assert smooth.history[-1].train_loss != plain.history[-1].train_loss
    model, r, _ = _train(stratified_tensors, _spec("label_smoothing"))
    ce = torch.nn.functional.cross_entropy(
        model.eval()(engine.to_float(stratified_tensors.x_val.contiguous())), stratified_tensors.y_val
    ).item()
    assert r.history[-1].val_loss == pytest.approx(ce, rel=1e-4)


@pytest.mark.parametrize("name", ["augment", "cosine", "sgd", "augment+cosine+label_smoothing+sgd"])
@pytest.mark.parametrize("after", [1, 2])
def test_resume_is_bit_identical(stratified_tensors, name, after):
    spec = _spec(name)
    whole = _train(stratified_tensors, spec)
    _, _, snap = _train(stratified_tensors, spec, keep_at=after)
    assert same_training(_train(stratified_tensors, spec, resume=snap), whole)
    if "augment" in name:
        # the transform's draws are part of the state
        snap["rng"]["data"] = torch.Generator().manual_seed(99).get_state()
        assert not same_training(_train(stratified_tensors, spec, resume=snap), whole)


def test_the_tutorials_pieces_are_the_default(stratified_tensors):
    spec = _spec("baseline")
    build, pieces = assemble(spec, dataset("cifar10"))
    assert pieces == engine.Pieces()
    a = engine.train(
        build,
        stratified_tensors.x_train,
        stratified_tensors.y_train,
        stratified_tensors.x_val,
        stratified_tensors.y_val,
        spec.train,
        3,
    )
    b = engine.train(
        build,
        stratified_tensors.x_train,
        stratified_tensors.y_train,
        stratified_tensors.x_val,
        stratified_tensors.y_val,
        spec.train,
        3,
        pieces=pieces,
    )
    assert same_training(a, b)


# ---------------------------------------------------------------- designs and effects


RUN = (
    "run",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.threads=1",
)


def _stored(work):
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    seeds = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")
    acc = {}
    for r in seeds:
        acc.setdefault(r.data.tags["harness.variant"], {})[int(r.data.tags["harness.seed"])] = r.data.metrics[
            "test_acc"
        ]
    analysis = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'analysis'")
    return acc, analysis


def _effects_table(report):
    rows = {}
    for line in report.splitlines():
        m = re.match(r"\| ([^|]+) \| (main|interaction|contribution|total) \| (\d+) \| ([+-][\d.]+) \|", line)
        if m:
            rows[m.group(1)] = float(m.group(4))
    return rows


@pytest.mark.slow  # slow group: a real 2×2 factorial run (8 runs), then its report rebuilt
def test_a_2x2_factorial_reports_effects_equal_to_a_hand_computation(tmp_path, data_dir):
    fresh_store(tmp_path)
    proc = run_cli(*RUN, "--design", "factorial", "--factors", "dropout,batchnorm", cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 of 8 runs finished" in proc.stdout
    acc, (analysis,) = _stored(tmp_path)
    assert set(acc) == {"baseline", "batchnorm", "dropout", "batchnorm+dropout"}
    main_b, main_d, inter = [], [], []
    for s in (2021, 2022):
        y0, yb, yd, ybd = acc["baseline"][s], acc["batchnorm"][s], acc["dropout"][s], acc["batchnorm+dropout"][s]
        main_b.append((yb + ybd) / 2 - (y0 + yd) / 2)
        main_d.append((yd + ybd) / 2 - (y0 + yb) / 2)
        inter.append(((ybd - yd) - (yb - y0)) / 2)
    table = _effects_table((tmp_path / "reports" / "default" / "report.md").read_text())
    assert table == pytest.approx(
        {"batchnorm": np.mean(main_b), "dropout": np.mean(main_d), "batchnorm × dropout": np.mean(inter)}, abs=0.006
    )
    m = analysis.data.metrics
    assert m["effect.batchnorm"] == pytest.approx(np.mean(main_b)) and m["effect.batchnorm_x_dropout"] == pytest.approx(
        np.mean(inter)
    )
    assert m["effect.dropout.seeds"] == 2 and "effect.dropout.p_holm" in m
    assert (tmp_path / "reports" / "default" / "effects_forest.png").stat().st_size > 0
    assert (tmp_path / "reports" / "default" / "effects_interaction.png").stat().st_size > 0
    before = (tmp_path / "reports" / "default" / "report.md").read_bytes()
    rebuilt = run_cli("report", "--experiment", "default", cwd=tmp_path)  # the design is read back from the store
    assert rebuilt.returncode == 0 and (tmp_path / "reports" / "default" / "report.md").read_bytes() == before


@pytest.mark.slow  # slow group: a real leave-one-out run of three components (10 runs)
def test_leave_one_out_reports_each_components_contribution(tmp_path, data_dir):
    fresh_store(tmp_path)
    proc = run_cli(
        *RUN, "--design", "leave-one-out", "--factors", "dropout,batchnorm,weight_decay", cwd=tmp_path, data=data_dir
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    acc, _ = _stored(tmp_path)
    full = "batchnorm+dropout+weight_decay"
    assert set(acc) == {"baseline", full, "dropout+weight_decay", "batchnorm+weight_decay", "batchnorm+dropout"}
    expected = {
        x: np.mean([acc[full][s] - acc[rest][s] for s in (2021, 2022)])
        for x, rest in (
            ("batchnorm", "dropout+weight_decay"),
            ("dropout", "batchnorm+weight_decay"),
            ("weight_decay", "batchnorm+dropout"),
        )
    }
    expected["full − baseline"] = np.mean([acc[full][s] - acc["baseline"][s] for s in (2021, 2022)])
    assert _effects_table((tmp_path / "reports" / "default" / "report.md").read_text()) == pytest.approx(
        expected, abs=0.006
    )


@pytest.mark.parametrize(
    "args,fragment",
    [
        (
            ["--design", "factorial", "--factors", "dropout,dropuot"],
            "design.factors: unknown component 'dropuot' (did you mean 'dropout'?)",
        ),
        (["--design", "factorial", "--factors", "dropout,dropout"], "design.factors: 'dropout' is listed twice"),
        (
            ["--design", "factorial", "--factors", "augment,batchnorm,cosine,dropout,label_smoothing,sgd,weight_decay"],
            "7 factors make 128 cells × seeds runs; at most 6 without --yes",
        ),
        (
            ["--design", "factorial", "--factors", "sgd,weight_decay", "--set", "params.sgd.weight_decay=0.001"],
            "both set train.weight_decay",
        ),
        (["--design", "factorial", "--factors", "baseline,dropout"], "name single components"),
        (["--design", "leave-one-out", "--factors", "dropout"], "needs at least 2 component(s)"),
        (["--design", "fractional", "--factors", "dropout"], "design.kind: 'fractional' is not allowed"),
        (["--design", "factorial"], "--factors: required with --design factorial"),
        (["--factors", "dropout"], "--factors: give it with --design"),
        (
            ["--design", "factorial", "--factors", "dropout", "--variants", "baseline"],
            "variants: not with a factorial design",
        ),
    ],
)
def test_bad_designs_stop_before_anything_is_written(tmp_path, data_dir, args, fragment):
    proc = run_cli("run", *args, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 2 and fragment in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_seven_factors_with_yes_expand_to_128_cells():
    cfg = experiment_file.load_experiment(
        None,
        **{
            "design.kind": "factorial",
            "design.allow_large": True,
            "design.factors": ["augment", "batchnorm", "cosine", "dropout", "label_smoothing", "sgd", "weight_decay"],
        },
    )
    assert len(cfg.variants) == 128 and cfg.variants[0] == "baseline"


def test_list_shows_components_and_what_each_changes(tmp_path):
    proc = run_cli("list", cwd=tmp_path, env={"HARNESS_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0
    for text in (
        "transform crop_and_flip",
        "schedule cosine_to_zero",
        "loss smoothed_cross_entropy",
        "optimizer nesterov_sgd",
        "train.lr=0.05",
        "model batchnorm=True",
        "model dropout=0.5",
    ):
        assert text in proc.stdout, text
