"""Fused groups (harness/training/fused.py) against separate runs, on a CPU with one thread.

- The members start from exactly the weights their separate runs start from.
- After one epoch each member's weights match its separate run's within float noise, measured in
  the test on the separate path itself: the same separate runs in another memory layout
  (contiguous instead of channels-last: other kernels, another summation order), or against the
  same run in float64. Adam divides each gradient by its own running size, so where a gradient is
  near zero any float noise moves a weight by up to the learning rate per step: the noise is
  heavy-tailed and differs between CPUs, and a fixed constant fits one CPU only. Two
  exceptions, bounded separately: the bias of a convolution followed by BatchNorm and BatchNorm's
  running mean. BatchNorm subtracts the batch mean, so that bias has an exact gradient of zero and
  what it gets is float noise of the order of 1e-9; Adam divides a gradient by its own running
  size, so noise moves it by up to the learning rate per step either way, in both runs. Its
  difference is bounded by steps × lr, the running mean's by that too.
- Over 10 epochs, the members' validation accuracies are equivalent to their separate runs' within
  ±EQUIVALENCE points by the report's own test of equivalence (TOST, paired by seed, α = 0.05,
  harness/analysis/stats.py) on 8 seeds, for each of baseline, dropout, batchnorm, weight decay and
  augment (seeds whose numbers are identical need no test). A p > 0.05 of a test of difference
  would claim nothing: 8 seeds miss a small difference.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from harness.analysis import stats
from harness.settings.analysis import Analysis
from harness.training import engine, fused, fused_data
from harness.training.fused_net import FusedLeNet
from tests.helpers import NOISE_FACTOR, arrays, float_noise, gap, parts

# points: the margin 8 seeds of this tiny task can show (the intervals below reach ±1.4 for batchnorm)
EQUIVALENCE = 3.0
BN_DRIFTERS = ("conv1.bias", "conv2.bias", "bn1.running_mean", "bn2.running_mean")


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return (*arrays(320, 1), *arrays(160, 2))


def separate(variant: str, data, seed: int, epochs: int, layout: str = "auto"):
    build, pieces, train = parts(variant)
    return engine.train(
        build,
        *data,
        engine.TrainSettings(epochs=epochs, batch_size=32, **train),
        seed,
        pieces=pieces,
        runtime=engine.Runtime(memory_format=layout),
    )


class Float64(nn.Module):
    """A network run in float64 on the engine's float32 images: the exact reference a float32 run strays from."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.double()

    def forward(self, x):
        return self.net(x.double())


def group(variants: list[str], data, seeds: list[int], epochs: int):
    members, pieces = [], None
    for variant, seed in zip(variants, seeds):
        build, pieces, train = parts(variant)
        members.append(fused.Member(build, *data, engine.TrainSettings(epochs=epochs, batch_size=32, **train), seed))
    return fused.train_group(members, pieces=pieces)


@pytest.mark.parametrize("variant", ["baseline", "dropout+batchnorm"])
def test_a_fused_group_starts_from_the_weights_of_its_separate_runs(data, variant):
    build, _, _ = parts(variant)
    seeds = [3, 4, 5]
    net = FusedLeNet([_seeded(build, s) for s in seeds])
    for k, s in enumerate(seeds):
        alone = _seeded(build, s).state_dict()
        member = net.member_state(k)
        assert member.keys() == alone.keys()
        assert all(torch.equal(member[name], alone[name]) for name in alone), f"seed {s}"


def _seeded(build, seed):
    engine.seed_everything(seed)
    return build()


# each engine piece
@pytest.mark.parametrize(
    "variants",
    [
        ["baseline"] * 3,
        ["dropout"] * 3,
        ["batchnorm"] * 3,
        ["augment"] * 3,
        ["baseline", "weight_decay", "dropout"],  # per-member weight decay and dropout p
        ["label_smoothing"] * 2,
        ["cosine"] * 2,
        ["sgd"] * 2,
        ["augment+cosine+sgd"] * 2,
    ],
)
def test_after_one_epoch_each_member_matches_its_separate_run(data, variants):
    seeds = [7, 8, 9][: len(variants)]
    steps = (320 + 31) // 32
    out = group(variants, data, seeds, epochs=1)
    alone = [separate(v, data, s, epochs=1) for v, s in zip(variants, seeds)]
    other = [separate(v, data, s, epochs=1, layout="contiguous")[0].state_dict() for v, s in zip(variants, seeds)]
    drifters = BN_DRIFTERS if any("batchnorm" in v for v in variants) else ()
    tolerance = NOISE_FACTOR * float_noise([(m.state_dict(), o) for (m, _), o in zip(alone, other)], drifters)
    for variant, seed, member, (model, result) in zip(variants, seeds, out, alone):
        fused_model, fused_result = member
        a, b = model.state_dict(), fused_model.state_dict()
        for name in a:
            if not a[name].is_floating_point():
                assert torch.equal(a[name], b[name]), name
                continue
            bound = steps * 1e-3 * 1.01 if name in BN_DRIFTERS and "batchnorm" in variant else tolerance
            diff = (a[name] - b[name].to(a[name].dtype)).abs().max().item()
            assert diff <= bound, f"{variant} seed {seed}: {name} differs by {diff:.3g} > {bound:.3g}"
        if "batchnorm" not in variant:  # the same predictions, so the same numbers
            assert fused_result.history[0].val_acc == result.history[0].val_acc
            # a mean of 320 losses summed in another order: at most one rounding per term apart
            bound = 320 * torch.finfo(torch.float32).eps * result.history[0].train_loss
            assert abs(fused_result.history[0].train_loss - result.history[0].train_loss) <= bound


@pytest.mark.parametrize("variant", ["baseline", "dropout", "batchnorm", "weight_decay", "augment"])
def test_over_ten_epochs_fused_members_are_equivalent_to_separate_runs_by_tost(data, variant):
    """Equivalence, not "indistinguishable": a t-test's p > 0.05 on 8 seeds has about a third of
    the power to see a 1-point shift and claims nothing; the TOST at ±3 points is asserted, and the
    TOST at the report's default ±0.5 printed."""
    seeds = list(range(100, 108))
    out = group([variant] * len(seeds), data, seeds, epochs=10)
    fused_acc = {s: m[1].history[-1].val_acc for s, m in zip(seeds, out)}
    alone_acc = {s: separate(variant, data, s, epochs=10)[1].history[-1].val_acc for s in seeds}
    result = stats.paired(alone_acc, fused_acc, Analysis(margin=EQUIVALENCE))
    half = stats.paired(alone_acc, fused_acc, Analysis(margin=0.5))
    same = sum(fused_acc[s] == alone_acc[s] for s in seeds)
    # docs/performance.md's row (`pytest -s -k ten_epochs tests/training/test_fused.py` prints them)
    print(
        f"\n| {variant} | {np.mean(list(alone_acc.values())):.2f} | {np.mean(list(fused_acc.values())):.2f} | {result.diff_mean:+.2f} | "
        f"[{result.ci_low:+.2f}, {result.ci_high:+.2f}] | {result.t_p:.3f} | {result.tost_t_p:.3g} | {half.tost_t_p:.3g} | "
        f"{same}/{len(seeds)} |"
    )
    # TOST by t, or where the differences have no spread by the exact sign-flip test, as the report decides
    if same < len(seeds):
        tost = result.tost_t_p if np.isfinite(result.tost_t_p) else result.tost_perm_p
        assert tost < 0.05, (
            f"{variant}: equivalence within ±{EQUIVALENCE} points not shown (TOST p = {tost:.3g}): {result}"
        )
    assert np.mean(list(alone_acc.values())) > 20  # it learned something: 10 classes, chance is 10%


def test_a_member_whose_validation_outputs_are_not_finite_fails_alone_and_is_never_recorded_finished(data):
    """Argmax of NaN picks class 0, so a member NaN only at evaluation would look like a run with
    chance accuracy; it fails at the epoch whose validation was not finite, the others train on."""
    build, pieces, _ = parts("baseline")
    members = [fused.Member(build, *data, engine.TrainSettings(epochs=2, batch_size=32), s) for s in (1, 2)]
    real = fused_data.evaluate_group

    def nan_for_the_second_at_epoch_two(fused_net, ms, *args, **kwargs):
        val = real(fused_net, ms, *args, **kwargs)
        calls.append(1)
        return [val[0], (float("nan"), val[1][1])] if len(calls) == 2 else val

    calls: list[int] = []
    fused_data.evaluate_group = nan_for_the_second_at_epoch_two
    try:
        out = fused.train_group(members, pieces=pieces)
    finally:
        fused_data.evaluate_group = real
    assert isinstance(out[1], engine.NonFiniteOutput) and out[1].epoch == 2
    assert str(out[1]) == "outputs or loss not finite on the validation set at epoch 2"
    assert not isinstance(out[0], Exception) and len(out[0][1].history) == 2


def test_a_member_whose_loss_goes_non_finite_fails_alone(data):
    """One member's weights poisoned after building: its loss is NaN from the first step, the
    others train on exactly (tests/training/test_nonfinite.py diverges fused members by their learning rate
    through the CLI)."""
    build, pieces, _ = parts("baseline")
    settings = engine.TrainSettings(epochs=2, batch_size=32)
    members = [fused.Member(build, *data, settings, s) for s in (1, 2, 3)]
    real = fused.build_group

    def poisoned(ms, device, fmt=torch.contiguous_format):
        net, nets = real(ms, device, fmt)
        with torch.no_grad():
            net.fc3.weight[1].fill_(float("nan"))
        return net, nets

    fused.build_group = poisoned
    try:
        out = fused.train_group(members, pieces=pieces)
    finally:
        fused.build_group = real
    assert isinstance(out[1], engine.NonFiniteLoss) and out[1].epoch == 1 and out[1].step == 1
    alone = [separate("baseline", data, s, epochs=2)[0].state_dict() for s in (1, 3)]
    other = [separate("baseline", data, s, epochs=2, layout="contiguous")[0].state_dict() for s in (1, 3)]
    tolerance = NOISE_FACTOR * float_noise(list(zip(alone, other)))
    for k, ref in zip((0, 2), alone):
        assert gap(ref, out[k][0].state_dict()) <= tolerance  # the others trained on as if alone


def test_members_with_their_own_learning_rates_each_match_their_separate_run(data):
    """The learning rate is per member, like the weight decay: each member steps at its own rate.
    Each member strays from its exact run (the separate run in float64) at most NOISE_FACTOR times
    as far as the separate float32 runs stray from theirs."""
    rates = [(1e-3, 0.0), (3e-3, 0.0), (5e-4, 5e-4)]
    build, pieces, _ = parts("baseline")
    members = [
        fused.Member(build, *data, engine.TrainSettings(epochs=1, batch_size=32, lr=lr, weight_decay=wd), 7 + k)
        for k, (lr, wd) in enumerate(rates)
    ]
    start = time.perf_counter()
    out = fused.train_group(members, pieces=pieces)
    wall = time.perf_counter() - start
    # each member's epoch_seconds is its share of the group's epoch, so the shares add up to no more than the group took
    assert sum(m[1].history[0].seconds for m in out) <= wall
    alone, exact = [], []
    for k, (lr, wd) in enumerate(rates):
        settings = engine.TrainSettings(epochs=1, batch_size=32, lr=lr, weight_decay=wd)
        alone.append(engine.train(build, *data, settings, 7 + k, pieces=pieces)[0].state_dict())
        wide = engine.train(lambda: Float64(build()), *data, settings, 7 + k, pieces=pieces)[0].state_dict()
        exact.append({name[len("net.") :]: value for name, value in wide.items()})
    tolerance = NOISE_FACTOR * float_noise(list(zip(alone, exact)))
    for k, (lr, wd) in enumerate(rates):
        strays = gap(out[k][0].state_dict(), exact[k])
        assert strays <= tolerance, (
            f"lr {lr}: the fused member strays {strays:.3g} from its exact run, the separate runs at most {tolerance / NOISE_FACTOR:.3g}"
        )
    starts = [_seeded(build, 7 + k).state_dict() for k in range(2)]
    moved = [max((out[k][0].state_dict()[n] - starts[k][n]).abs().max().item() for n in starts[k]) for k in range(2)]
    # three times the rate moved the weights further: the rates were not all the first's
    assert moved[1] > 1.5 * moved[0]


def test_members_must_agree_on_every_setting_but_the_learning_rate_and_the_weight_decay(data):
    build, _, _ = parts("baseline")
    a = fused.Member(build, *data, engine.TrainSettings(epochs=1, batch_size=32), 1)
    b = fused.Member(build, *data, engine.TrainSettings(epochs=1, batch_size=64), 2)
    with pytest.raises(ValueError, match="share every training setting but the learning rate and the weight decay"):
        fused.train_group([a, b])
