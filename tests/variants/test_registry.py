"""The component registry; the smoke tests are generated from it, so a new component is tested without editing a test."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import variants
from harness.variants import registry


def test_duplicate_name_raises():
    with pytest.raises(ValueError, match="collides with the shipped component"):
        registry.register("baseline", hypothesis="again")(lambda: registry.Change())


def test_unknown_name_lists_valid_names_and_close_match():
    with pytest.raises(variants.UnknownVariant) as e:
        variants.get("dropuot")
    msg = str(e.value)
    assert "did you mean 'dropout'" in msg
    for name in ("baseline", "batchnorm", "dropout", "weight_decay"):
        assert name in msg


def test_unknown_name_without_close_match_still_lists_names():
    msg = registry.unknown_message("zzz")
    assert "did you mean" not in msg and "baseline" in msg


def test_built_in_components():
    assert {"baseline", "dropout", "batchnorm", "weight_decay", "augment", "cosine", "label_smoothing", "sgd"} <= set(
        variants.names()
    )
    assert variants.component("dropout").params == {"p": 0.5} and variants.get("dropout").params == {"dropout.p": 0.5}
    assert variants.component("weight_decay").train == {"weight_decay": 5e-4}
    assert variants.get("baseline").components == () and variants.component("baseline").train == {}


def test_every_variant_file_is_imported_by_the_package_and_registers_a_variant():
    import sys

    registered_modules = {c.module for c in variants.all_components()}
    folder = Path(variants.__file__).parent
    for path in sorted(folder.glob("*.py")):
        if path.stem in ("__init__", "registry", "lenet", "plugins"):
            continue
        name = f"harness.variants.{path.stem}"
        assert name in sys.modules, (
            f"variants/{path.name} is not imported by harness/variants/__init__.py, so it never registers"
        )
        assert name in registered_modules, f"variants/{path.name} exists but registers no variant"


def test_a_component_parameter_needs_a_default_and_a_name_no_plus():
    with pytest.raises(ValueError, match="every parameter needs a default, p has none"):
        variants.register("broken", hypothesis="x")(lambda p: None)
    with pytest.raises(ValueError, match="use letters, digits and '_'"):
        variants.register("a+b", hypothesis="x")(lambda: None)
    assert "broken" not in variants.names()


@pytest.mark.parametrize("name", variants.names())
@pytest.mark.parametrize("shape,classes", [((3, 32, 32), 100), ((1, 32, 32), 10), ((3, 28, 28), 10)])
def test_variant_builds_for_other_datasets(name, shape, classes):
    model = variants.get(name).build(shape, classes)
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, classes)


@pytest.mark.parametrize("name", variants.names())
def test_variant_forward_backward(name):
    v = variants.get(name)
    assert variants.component(name).hypothesis and "\n" not in variants.component(name).hypothesis
    torch.manual_seed(0)
    model = v.build()
    x = torch.rand(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


class TutorialNet(nn.Module):
    """The tutorial's network as its article writes it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def test_baseline_has_the_tutorials_initial_weights_and_outputs():
    torch.manual_seed(2021)
    ours = variants.get("baseline").build()
    torch.manual_seed(2021)
    theirs = TutorialNet()
    ours_params = list(ours.parameters())
    theirs_params = list(theirs.parameters())
    assert len(ours_params) == len(theirs_params)
    for a, b in zip(ours_params, theirs_params):
        assert torch.equal(a, b)
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(ours(x), theirs(x))


def test_dropout_rejects_p_outside_unit_interval():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            variants.get("dropout").build(params={"dropout.p": p})


def test_batchnorm_sits_between_convolution_and_relu():
    model = variants.get("batchnorm").build()
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.bn1.num_features == 6
    assert isinstance(model.bn2, nn.BatchNorm2d) and model.bn2.num_features == 16


@pytest.mark.parametrize("name", variants.names())
def test_component_trains_with_its_pieces(name):
    """Each component, its pieces (transform, loss, optimizer, schedule) included, trains two epochs
    of tiny data to finite losses."""
    from harness.data import loading
    from harness.data.datasets import get as dataset
    from harness.running.assembly import assemble
    from harness.settings import config, experiment_file
    from harness.training import engine
    from tests.helpers import make_arrays

    torch.set_num_threads(1)
    a = loading.check(make_arrays(128, 20), "synthetic")
    d = loading.to_device(a, loading.make_split(a.y_train, "stratified", 0.75, 0), torch.device("cpu"))
    cfg = experiment_file.load_experiment(None, ["train.epochs=2", "train.batch_size=32"], variants=(name,))
    spec = config.resolve(cfg, cfg.variants[0], 1)
    build, pieces = assemble(spec, dataset("cifar10"))
    _, result = engine.train(build, d.x_train, d.y_train, d.x_val, d.y_val, spec.train, 1, pieces=pieces)
    assert all(math.isfinite(s.train_loss) and math.isfinite(s.val_loss) for s in result.history)


def test_every_pair_of_components_composes():
    for a, b in itertools.combinations(variants.names(), 2):
        v = variants.get(f"{a}+{b}")
        v.change()
        v.build()
