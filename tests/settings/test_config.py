"""Settings (harness/settings: config.py, experiment_file.py, checks.py, designs.py): defaults and
the shipped experiment files, flags and `--set` overrides, the seed flag, `[params]` tables (the
baseline's own included, unused ones checked), run keys and configuration hashes, every `[train]`
setting reaching the engine with a check of its own, and the one-line errors for bad values. Through
the CLI: a long list of seeds is refused at once, and an experiment file with a BOM and the name
`-x` runs and rebuilds its report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from harness.base.errors import UsageError
from harness.settings import config, experiment_file
from tests.helpers import ROOT, TINY, check_refusal, fresh_store, run_cli


def test_defaults_and_tutorial_file():
    cfg = experiment_file.load_experiment(None)
    assert cfg.train.epochs == 100 and cfg.train.batch_size == 256 and cfg.train.lr == 1e-3
    assert cfg.seeds == (2021,) and cfg.data.train_ratio == 0.8
    t = experiment_file.load_experiment("tutorial")
    assert t.name == "tutorial" and t.variants == ("baseline", "dropout", "batchnorm", "weight_decay")
    assert t.data.split == "prefix" and t.train.shuffle is False and t.train.epochs == 100
    q = experiment_file.load_experiment("quick")
    assert q.seeds == (2021, 2022, 2023) and q.train.epochs == 3


def test_flags_then_set_override_the_file():
    cfg = experiment_file.load_experiment(
        "tutorial", ["train.lr=0.01", "params.dropout.p=0.3"], variants=("dropout",), **{"train.epochs": 2}
    )
    assert cfg.variants == ("dropout",) and cfg.train.epochs == 2 and cfg.train.lr == 0.01
    spec = config.resolve(cfg, "dropout", 2021)
    assert spec.model_params == {"dropout.p": 0.3}


def test_variant_training_overrides_and_params_table():
    cfg = experiment_file.load_experiment(None, variants=("baseline", "weight_decay"))
    assert config.resolve(cfg, "weight_decay", 1).train.weight_decay == 5e-4
    assert config.resolve(cfg, "baseline", 1).train.weight_decay == 0.0
    cfg = experiment_file.load_experiment(None, ["params.weight_decay.weight_decay=1e-3"], variants=("weight_decay",))
    assert config.resolve(cfg, "weight_decay", 1).train.weight_decay == 1e-3


@pytest.mark.parametrize(
    "text,expected",
    [
        ("3", (2021, 2022, 2023)),
        ("40", tuple(range(2021, 2061))),  # a lone number is always a count
        ("2021,", (2021,)),
        ("2021,2022", (2021, 2022)),
        ("7,", (7,)),
        ("0,1,2", (0, 1, 2)),
    ],
)
def test_seed_flag(text, expected):
    assert experiment_file.parse_seed_flag(text) == expected


@pytest.mark.parametrize(
    "sets,flags,fragment",
    [
        (["train.lr=0"], {}, "train.lr: 0.0 is not allowed"),
        (["train.lr=-1"], {}, "train.lr"),
        (["train.lr=nan"], {}, "not finite"),
        (["train.lr=inf"], {}, "not finite"),
        (["train.weight_decay=-0.1"], {}, "train.weight_decay"),
        (["train.epochs=0"], {}, "train.epochs: 0 is not allowed"),
        (["train.epochs=1.5"], {}, "train.epochs: expected int, got float"),
        (["train.batch_size=0"], {}, "train.batch_size"),
        (["train.batch_size='big'"], {}, "expected int, got str"),
        (["train.shuffle=1"], {}, "train.shuffle: expected bool"),
        (["train.select=val_f1"], {}, "one of val_acc, val_loss, last"),
        (["train.device=tpu"], {}, "train.device"),
        (["data.split=random"], {}, "one of prefix, stratified"),
        (["data.train_ratio=1.0"], {}, "data.train_ratio"),
        (["train.nonsense=1"], {}, "train.nonsense: unknown setting"),
        (["nonsense=1"], {}, "nonsense: unknown setting"),
        (["params.dropout.p=1.0"], {"variants": ("dropout",)}, "variants: dropout: dropout must be in [0, 1), got 1.0"),
        (["params.dropout.p=-0.2"], {"variants": ("dropout",)}, "dropout must be in [0, 1), got -0.2"),
        (["params.dropout.q=0.2"], {"variants": ("dropout",)}, "params.dropout.q: unknown setting"),
        (["params.dropout.p='x'"], {"variants": ("dropout",)}, "params.dropout.p: expected float"),
        (["params.nonet.p=0.1"], {}, "params.nonet: unknown component"),
        (["baseline=nope"], {}, "baseline: unknown component"),
        (["name=has space"], {}, "name"),
        (
            ["name=.."],
            {},
            "name: '..' is not allowed; expected 1 to 100 letters, digits, '-', '_' or '.', not only dots",
        ),
        (["name=a/b"], {}, "name: 'a/b' is not allowed"),
        ([f"name={'x' * 101}"], {}, "is not allowed; expected 1 to 100 letters"),
        (["seeds=0"], {}, "seeds: a seed count must be from 1 to 1000, got 0"),
        (["seeds=[1, 1]"], {}, "seeds: seed 1 is listed twice"),
        (
            ["analysis.test=wilcoxon"],
            {},
            "analysis.test: 'wilcoxon' is not allowed; expected one of t (paired t-test), permutation",
        ),
        (["analysis.margin=0"], {}, "analysis.margin: 0.0 is not allowed"),
        (["analysis.alpha=0.7"], {}, "analysis.alpha: 0.7 is not allowed"),
        (["analysis.margins=1"], {}, "analysis.margins: unknown setting; allowed: margin, test, alpha"),
        (["analysis=3"], {}, "analysis: expected a table"),
        (["noequals"], {}, "expected key=value"),
        ([], {"variants": ("dropuot",)}, "did you mean 'dropout'"),
        ([], {"variants": ("baseline", "baseline")}, "listed twice"),
        ([], {"variants": ()}, "empty"),
        ([], {"seeds": (1, 1)}, "listed twice"),
    ],
)
def test_bad_settings_are_rejected_with_the_field(sets, flags, fragment):
    with pytest.raises(UsageError) as e:
        experiment_file.load_experiment(None, sets, **flags)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["", "3,x", "-1,", "2021,-5", "1,1", "2.5", "0", "100000", "1,,2", ",", ",5"])
def test_bad_seed_flags(text):
    with pytest.raises(UsageError, match="--seeds"):
        experiment_file.parse_seed_flag(text) if text else config.parse_seeds([], "--seeds")


def test_empty_variant_flag():
    with pytest.raises(UsageError, match="empty"):
        config.parse_variant_list(" , ")


def test_experiment_file_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        experiment_file.load_experiment(str(tmp_path / "missing.toml"))
    empty = tmp_path / "empty.toml"
    empty.write_text("  \n")
    with pytest.raises(UsageError, match="is empty"):
        experiment_file.load_experiment(str(empty))
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n[train\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        experiment_file.load_experiment(str(bad))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[train]\nepochs = 'ten'\n")
    with pytest.raises(UsageError, match="train.epochs: expected int, got str 'ten'"):
        experiment_file.load_experiment(str(wrong))
    with pytest.raises(UsageError, match="no experiment named 'nope'"):
        experiment_file.load_experiment("nope")


def test_config_hash_ignores_where_results_go():
    a = experiment_file.load_experiment(None)
    b = experiment_file.load_experiment(None, ["tracking_uri='sqlite:///other.db'", "reports_dir='elsewhere'"])
    c = experiment_file.load_experiment(None, ["train.lr=0.002"])
    assert config.config_hash(a) == config.config_hash(b) != config.config_hash(c)


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = experiment_file.load_experiment("tutorial", ["params.dropout.p=0.25"])
    path = tmp_path / "again.toml"
    path.write_text(config.to_toml(cfg))
    assert experiment_file.load_experiment(str(path)) == cfg


def test_precision_is_part_of_a_runs_key_but_layout_compile_and_determinism_are_not():
    base = config.resolve(experiment_file.load_experiment(None), "baseline", 2021)
    key = base.variant_key("cifar10:abc", "split")
    for setting in (
        "train.memory_format='contiguous'",
        "train.compile='default'",
        "train.determinism='fast'",
        "train.device='cpu'",
    ):
        assert (
            config.resolve(experiment_file.load_experiment(None, [setting]), "baseline", 2021).variant_key(
                "cifar10:abc", "split"
            )
            == key
        ), setting
    assert (
        config.resolve(experiment_file.load_experiment(None, ["train.precision='bf16'"]), "baseline", 2021).variant_key(
            "cifar10:abc", "split"
        )
        != key
    )
    # the tutorial's bits on a CPU too
    assert experiment_file.load_experiment("tutorial").runtime.memory_format == "contiguous"


def test_a_key_names_the_dataset_and_its_content():
    spec = config.resolve(experiment_file.load_experiment(None), "baseline", 2021)
    assert (
        len({spec.key("cifar10:aaaa", "split"), spec.key("cifar10:bbbb", "split"), spec.key("cifar100:aaaa", "split")})
        == 3
    )


def test_every_train_setting_reaches_the_engine_by_its_name():
    """`[train]` values land in engine.TrainSettings (what is trained) or engine.Runtime (how), the
    types the engine reads; nothing copies them from one type into another."""
    import dataclasses

    from harness.training import engine

    cfg = experiment_file.load_experiment(
        None,
        [
            "train.epochs=7",
            "train.batch_size=32",
            "train.eval_batch_size=64",
            "train.lr=0.01",
            "train.weight_decay=0.1",
            "train.shuffle=false",
            "train.select='last'",
            "train.precision='bf16'",
            "train.memory_format='contiguous'",
            "train.compile='default'",
            "train.determinism='fast'",
            "train.threads=1",
            "train.device='cpu'",
            "train.fuse=4",
            "train.checkpoint_seconds=0",
            "train.last_batch='drop'",
            "train.run_figures=true",
        ],
    )
    assert type(cfg.train) is engine.TrainSettings and type(cfg.runtime) is engine.Runtime
    for part, default in ((cfg.train, engine.TrainSettings()), (cfg.runtime, engine.Runtime())):
        for f in dataclasses.fields(part):
            if f.name != "progress_every":
                assert getattr(part, f.name) != getattr(default, f.name), f.name
    assert config.resolve(cfg, "baseline", 1).train.lr == 0.01


def test_every_setting_has_a_check():
    import dataclasses

    from harness.settings import checks
    from harness.training import engine

    for section, cls in (("train", engine.TrainSettings), ("train", engine.Runtime), ("data", config.DataConfig)):
        for f in dataclasses.fields(cls):
            if f.name != "progress_every":
                assert f"{section}.{f.name}" in checks.CHECKS, f.name


def test_a_setting_added_at_its_neutral_value_keeps_the_keys_of_older_runs(monkeypatch):
    """A training setting added later (declared with metadata neutral=True: its default is how the
    harness trained before it existed) leaves every older key as it was; any other value changes it."""
    import dataclasses

    from harness.training import engine

    spec = config.resolve(experiment_file.load_experiment(None, variants=("baseline", "dropout")), "dropout", 2021)
    Extended = dataclasses.make_dataclass(
        "Extended",
        [("label_smoothing", float, dataclasses.field(default=0.0, metadata={"neutral": True}))],
        bases=(engine.TrainSettings,),
        frozen=True,
    )
    same = dataclasses.replace(spec, train=Extended(**dataclasses.asdict(spec.train)))
    other = dataclasses.replace(spec, train=Extended(**dataclasses.asdict(spec.train), label_smoothing=0.1))
    assert same.key("d", "s") == spec.key("d", "s") != other.key("d", "s")


def test_params_for_the_baseline_are_honoured_and_unused_params_are_checked(tmp_path):
    from harness.base.errors import UsageError
    from harness.settings import config, experiment_file

    exp = tmp_path / "exp.toml"
    exp.write_text('variants = ["baseline", "dropout"]\n[params.baseline]\nlr = 0.01\n')
    cfg = experiment_file.load_experiment(str(exp))
    assert config.resolve(cfg, "baseline", 2021).train.lr == 0.01  # not the default 0.001
    assert config.resolve(cfg, "dropout", 2021).train.lr == 0.001  # the baseline's table is the baseline's own
    plain = experiment_file.load_experiment(str(exp), sets=["params.baseline.lr=0.001"])
    assert config.resolve(cfg, "baseline", 2021).key("d", "s") != config.resolve(plain, "baseline", 2021).key("d", "s")
    for text, fragment in [
        ("[params.dropout]\np = {x = 1}\n", "params.dropout.p: expected float, got dict"),
        ("[params.baseline]\np = 0.5\n", "params.baseline.p: unknown setting for component 'baseline'"),
        ('[params.sgd]\nlr = "fast"\n', "params.sgd.lr: expected float, got str 'fast'"),
    ]:
        exp.write_text('variants = ["baseline"]\n' + text)  # no variant uses these: checked all the same
        with pytest.raises(UsageError, match=re.escape(fragment)):
            experiment_file.load_experiment(str(exp))


def test_a_long_list_of_seeds_is_refused_at_once(tmp_path, data_dir):
    start = time.monotonic()
    # near the longest argument Linux takes
    proc = run_cli("run", "--seeds", ",".join(map(str, range(15_000))), cwd=tmp_path, data=data_dir)
    check_refusal(
        tmp_path, proc, "--seeds: a list of 15000 seeds is not allowed; at most 1000 seeds, as for a count", {"data"}
    )
    (tmp_path / "exp.toml").write_text(f"seeds = {list(range(100_000))}\n")  # refused at once, not after 60 s
    proc = run_cli("run", "--experiment", "exp.toml", cwd=tmp_path, data=data_dir)
    check_refusal(tmp_path, proc, "seeds: a list of 100000 seeds is not allowed", {"data", "exp.toml"})
    assert time.monotonic() - start < 60


def test_spaced_factors_are_stripped():
    from harness.settings import designs, experiment_file

    flags = designs.flags("factorial", "dropout, label_smoothing")
    cfg = experiment_file.load_experiment(None, **flags)
    assert cfg.design.factors == ("dropout", "label_smoothing") and len(cfg.variants) == 4


@pytest.mark.slow  # slow group: a real run, then its report's rebuild command in another process
def test_a_bom_and_an_experiment_named_dash_x(tmp_path, data_dir):
    fresh_store(tmp_path)
    (tmp_path / "exp.toml").write_bytes('\ufeffname = "-x"\n'.encode("utf-8"))
    proc = run_cli("run", "--experiment", "exp.toml", *TINY, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "reports" / "-x" / "report.md").read_text()
    command = report.split("- rebuild: `")[1].split("`")[0]
    assert command == "python -m harness report --experiment=-x"
    again = subprocess.run(
        command.replace("python", sys.executable, 1).split(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
