"""The training engine: determinism, the tutorial's batches and values, non-finite losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from harness import variants
from harness.data import loading
from harness.training import engine
from tests.helpers import Exploding, make_arrays, split_settings


def _train(d, name="baseline", seed=1, **kw):
    settings, runtime = split_settings(**{"epochs": 2, "batch_size": 64, **kw})
    return engine.train(
        variants.get(name).build, d.x_train, d.y_train, d.x_val, d.y_val, settings, seed, runtime=runtime
    )


@pytest.mark.parametrize("name", ["baseline", "dropout", "batchnorm"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_same_seed_same_numbers(tensors, name, shuffle):
    torch.set_num_threads(1)
    m1, r1 = _train(tensors, name, shuffle=shuffle)
    m2, r2 = _train(tensors, name, shuffle=shuffle)
    assert [(s.train_loss, s.train_acc, s.val_loss, s.val_acc) for s in r1.history] == [
        (s.train_loss, s.train_acc, s.val_loss, s.val_acc) for s in r2.history
    ]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_other_seed_other_numbers(tensors):
    _, r1 = _train(tensors, seed=1)
    _, r2 = _train(tensors, seed=2)
    assert r1.history[-1].train_loss != r2.history[-1].train_loss


def test_shuffle_changes_batch_order_but_not_initial_weights(tensors):
    m1, r1 = _train(tensors, epochs=1, shuffle=True)
    m2, r2 = _train(tensors, epochs=1, shuffle=False)
    assert r1.history[0].train_loss != r2.history[0].train_loss


def test_unshuffled_epoch_equals_the_tutorials_loop():
    """One epoch of the engine with shuffle off gives bit-identical weights to the tutorial's code:
    torchvision ToTensor on PIL images, a DataLoader without shuffling, Adam, cross-entropy."""
    from PIL import Image
    from torchvision import transforms

    arrays = make_arrays(160, 20)
    a = loading.check(arrays, "synthetic")
    split = loading.make_split(a.y_train, "prefix", 0.8, 0)
    d = loading.to_device(a, split, torch.device("cpu"))
    settings = engine.TrainSettings(epochs=1, batch_size=32, shuffle=False)
    ours, _ = engine.train(
        variants.get("baseline").build,
        d.x_train,
        d.y_train,
        d.x_val,
        d.y_val,
        settings,
        2021,
        runtime=engine.Runtime(memory_format="contiguous"),
    )

    engine.seed_everything(2021)
    to_tensor = transforms.ToTensor()
    xs = torch.stack([to_tensor(Image.fromarray(img)) for img in arrays["x_train"][:128]])
    assert torch.equal(xs, engine.to_float(d.x_train))
    ys = torch.from_numpy(arrays["y_train"][:128].astype(np.int64))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=32, shuffle=False)
    theirs = variants.get("baseline").build()
    opt = torch.optim.Adam(theirs.parameters())
    loss_fn = nn.CrossEntropyLoss()
    theirs.train()
    for xb, yb in loader:
        opt.zero_grad()
        loss_fn(theirs(xb), yb).backward()
        opt.step()
    for a_, b_ in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a_, b_)


def test_select_picks_the_epoch_by_validation(tensors):
    _, r = _train(tensors, epochs=4, select="val_acc")
    best = max(r.history, key=lambda s: s.val_acc)
    assert r.selected_epoch == best.epoch
    _, r = _train(tensors, epochs=4, select="val_loss")
    assert r.selected_epoch == min(r.history, key=lambda s: s.val_loss).epoch
    _, r = _train(tensors, epochs=3, select="last")
    assert r.selected_epoch == 3


def test_losses_are_means_per_sample(tensors):
    model, r = _train(tensors, epochs=1)
    loss, acc, pred = engine.evaluate(model, tensors.x_val, tensors.y_val, engine.TrainSettings(eval_batch_size=7))
    full = nn.functional.cross_entropy(model.eval()(engine.to_float(tensors.x_val)), tensors.y_val).item()
    assert loss == pytest.approx(full, rel=1e-5)
    assert r.history[0].val_loss == pytest.approx(full, rel=1e-5)
    assert acc == pytest.approx(100.0 * (pred == tensors.y_val).float().mean().item())


class NanWhenEvaluated(nn.Module):
    """Finite while training; from evaluation `at` on, NaN (or one -inf logit, a finite loss)."""

    def __init__(self, at: int, value: float = float("nan")):
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)
        self.evaluations, self.at, self.value = 0, at, value

    def forward(self, x):
        out = self.lin(x.flatten(1))
        if self.training:
            return out
        self.evaluations += 1
        if self.evaluations < self.at:
            return out
        return out * self.value if math.isnan(self.value) else out.index_fill(1, torch.tensor([3]), self.value)


@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_outputs_that_are_not_finite_on_the_validation_or_test_set_fail_like_a_diverged_loss(tensors, value):
    settings = engine.TrainSettings(epochs=3, batch_size=64)
    with pytest.raises(engine.NonFiniteOutput, match=r"^outputs or loss not finite on the validation set at epoch 2$"):
        engine.train(
            lambda: NanWhenEvaluated(2, value),
            tensors.x_train,
            tensors.y_train,
            tensors.x_val,
            tensors.y_val,
            settings,
            0,
        )
    where = "test set (the weights of epoch 3)"
    with pytest.raises(engine.NonFiniteOutput, match=r"test set \(the weights of epoch 3\)$"):
        engine.evaluate(NanWhenEvaluated(1, value), tensors.x_test, tensors.y_test, settings, where=where)
    assert isinstance(engine.NonFiniteOutput(where), engine.NonFiniteLoss)  # the runner fails it as it does those


def test_non_finite_loss_names_epoch_and_step(tensors):
    cfg = engine.TrainSettings(epochs=3, batch_size=64)
    steps = 4  # 240 training images / 64
    with pytest.raises(engine.NonFiniteLoss) as e:
        engine.train(
            lambda: Exploding(steps + 2), tensors.x_train, tensors.y_train, tensors.x_val, tensors.y_val, cfg, 0
        )
    assert (e.value.epoch, e.value.step) == (2, 2)
    assert "epoch 2, step 2" in str(e.value)


def test_gpu_style_check_finds_the_first_non_finite_step_at_the_end_of_the_epoch(tensors, monkeypatch):
    """The GPU path (a flag kept on the device, read once per epoch), run here on the CPU: same
    epoch and step as the per-step check, and the bad epoch never reaches a checkpoint."""
    monkeypatch.setattr(engine, "checks_each_step", lambda device: False)
    seen = []
    cfg = engine.TrainSettings(epochs=3, batch_size=64)
    with pytest.raises(engine.NonFiniteLoss) as e:
        engine.train(
            lambda: Exploding(4 + 2),
            tensors.x_train,
            tensors.y_train,
            tensors.x_val,
            tensors.y_val,
            cfg,
            0,
            seen.append,
        )
    assert (e.value.epoch, e.value.step) == (2, 2)
    assert [p.epoch for p in seen if p.phase == "epoch"] == [1]


def test_progress_callback_reports_each_phase(tensors):
    seen = []
    cfg = engine.TrainSettings(epochs=2, batch_size=64)
    engine.train(
        variants.get("baseline").build,
        tensors.x_train,
        tensors.y_train,
        tensors.x_val,
        tensors.y_val,
        cfg,
        0,
        seen.append,
        runtime=engine.Runtime(progress_every=2),
    )
    done = [(p.phase, p.epoch) for p in seen if p.done and p.phase != "epoch"]
    assert done == [("train", 1), ("val", 1), ("train", 2), ("val", 2)]
    assert any(not p.done for p in seen)
    epochs = [p for p in seen if p.phase == "epoch"]
    assert [p.epoch for p in epochs] == [1, 2] and all(p.snapshot and p.stats for p in epochs)


def _weights_close(m1, m2, atol, skip=()):
    s1, s2 = m1.state_dict(), m2.state_dict()
    return all(torch.allclose(s1[k].float(), s2[k].float(), atol=atol) for k in s1 if k not in skip)


# Under BatchNorm a convolution's bias has no effect, so its gradient is pure rounding noise, which
# Adam scales to steps of size lr: those biases (and the running means that follow them) differ by
# ~lr between any two kernels. Everything that decides the model's outputs agrees.
BN_NOISE = ("conv1.bias", "conv2.bias", "bn1.running_mean", "bn2.running_mean")


@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_memory_layout_changes_only_float_rounding(tensors, name):
    torch.set_num_threads(1)
    cfg = dict(epochs=1, batch_size=64, shuffle=False)
    m1, r1 = _train(tensors, name, memory_format="contiguous", **cfg)
    m2, r2 = _train(tensors, name, memory_format="channels_last", **cfg)
    assert m2.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert _weights_close(m1, m2, 1e-4, skip=BN_NOISE)
    assert r1.history[0].val_loss == pytest.approx(r2.history[0].val_loss, rel=1e-4)
    # auto is channels-last on a CPU
    m3, _ = _train(tensors, name, **cfg)
    assert all(torch.equal(a, b) for a, b in zip(m2.state_dict().values(), m3.state_dict().values()))


def test_bf16_autocast_trains_in_bf16_and_keeps_fp32_weights(tensors):
    torch.set_num_threads(1)
    seen = []

    def spy(module, inputs, output):
        seen.append(output.dtype)

    def build():
        model = variants.get("baseline").build()
        model.fc3.register_forward_hook(spy)
        return model

    cfg = engine.TrainSettings(epochs=2, batch_size=64, precision="bf16")
    model, r = engine.train(build, tensors.x_train, tensors.y_train, tensors.x_val, tensors.y_val, cfg, 1)
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(np.isfinite([s.train_loss, s.val_loss]).all() for s in r.history)
    _, fp32 = _train(tensors, seed=1)
    assert r.history[-1].val_loss != fp32.history[-1].val_loss
    assert r.history[-1].val_loss == pytest.approx(fp32.history[-1].val_loss, rel=0.05)


@pytest.mark.parametrize(
    "mode,cudnn_det,bench,algos",
    [("cudnn", True, False, False), ("strict", True, False, True), ("fast", False, True, False)],
)
def test_determinism_setting_sets_the_flags(tensors, mode, cudnn_det, bench, algos):
    try:
        _train(tensors, epochs=1, determinism=mode)
        assert torch.backends.cudnn.deterministic is cudnn_det
        assert torch.backends.cudnn.benchmark is bench
        assert torch.are_deterministic_algorithms_enabled() is algos
    finally:
        engine.set_determinism("cudnn")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_forward_matches_eager_and_checkpoints_plain_weights(tensors, mode):
    """torch.compile (Inductor, a C++ compiler on the CPU; reduce-overhead's CUDA graphs only
    apply on CUDA, the rest of its path runs here)."""
    torch.set_num_threads(1)
    seen = []
    cfg = dict(epochs=2, batch_size=64, shuffle=False)
    eager, r1 = _train(tensors, **cfg)
    compiled, r2 = engine.train(
        variants.get("baseline").build,
        tensors.x_train,
        tensors.y_train,
        tensors.x_val,
        tensors.y_val,
        engine.TrainSettings(**cfg),
        1,
        seen.append,
        runtime=engine.Runtime(compile=mode),
    )
    assert _weights_close(eager, compiled, 1e-3)
    assert r1.history[-1].val_acc == pytest.approx(r2.history[-1].val_acc, abs=1.0)
    snap = [p.snapshot for p in seen if p.phase == "epoch"][-1]
    assert set(snap["model"]) == set(eager.state_dict()) and set(r2.selected_state) == set(eager.state_dict())


class Recording(nn.Module):
    """A linear model that keeps every training batch it is given (as the engine hands it over)."""

    def __init__(self, batches: list):
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)
        self.batches = batches

    def forward(self, x):
        if self.training:
            self.batches.append(x.detach().clone(memory_format=torch.preserve_format))
        return self.lin(x.reshape(len(x), -1))


def test_shuffled_batches_are_the_seeds_permutation_and_keep_the_channels_last_layout(tensors):
    """The shuffled path gathers the seed's permutation from the uint8 images; the gathered batch
    stays channels-last on a CPU (no layout copy after the gather) and holds exactly the images of
    indexing the training set with that permutation."""
    batches: list = []
    settings = engine.TrainSettings(epochs=1, batch_size=64, shuffle=True)
    engine.train(
        lambda: Recording(batches), tensors.x_train, tensors.y_train, tensors.x_val, tensors.y_val, settings, 7
    )
    order = torch.randperm(len(tensors.y_train), generator=torch.Generator().manual_seed(7))
    assert len(batches) == 4 and all(b.is_contiguous(memory_format=torch.channels_last) for b in batches)
    expected = engine.to_float(tensors.x_train[order])
    assert torch.equal(torch.cat(batches), expected)


def test_a_model_with_lazy_modules_gets_its_shapes_before_it_is_laid_out_and_trains(tensors):
    """A model with nn.LazyLinear gets its shapes from one forward before the engine lays it out
    (channels-last), then trains, the same both times."""

    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))

    settings, runtime = split_settings(epochs=1, batch_size=64, memory_format="channels_last")
    model, result = engine.train(
        build, tensors.x_train, tensors.y_train, tensors.x_val, tensors.y_val, settings, 0, runtime=runtime
    )
    assert model[3].weight.shape == (10, 4 * 28 * 28) and len(result.history) == 1
    again, _ = engine.train(
        build, tensors.x_train, tensors.y_train, tensors.x_val, tensors.y_val, settings, 0, runtime=runtime
    )
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    plain = variants.get("baseline").build()
    assert engine.materialize(plain, tensors.x_train[:1]) is plain  # a model without lazy modules: nothing runs
