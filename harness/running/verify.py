"""`verify`: re-train a few sampled finished runs of an experiment in a scratch store (never the
experiment's own) and compare their ledgers (`predictions.npz`) with the stored ones.

- On the same platform (every `harness.env.*` fact the run recorded: torch and CUDA versions,
  device, thread count, determinism flags; and the same `train.determinism` setting, which is in
  the configuration the run re-trains with) every class probability and predicted class must be
  the same bits: the check passes only then.
- Elsewhere the bits may differ; the check reports how many images get the same class, each
  metric's difference, and a TOST (harness/analysis/images.py `equivalence`) of the per-image
  accuracy difference, all re-trained runs' images pooled, against ±margin points: by default
  the experiment's `analysis.margin`, the smallest difference its verdicts treat as real.

Each run re-trains from the configuration it stored (`config.toml`), restricted to its variant and
seed, so it takes as long as that run did."""

from __future__ import annotations

import dataclasses
import io
import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.base.errors import UsageError
from harness.running.console import Console

METRICS = ("test_acc", "test_nll", "test_ece", "test_brier")
SAMPLE_SEED = 0  # which runs are sampled: the same ones on every machine, so two verifiers check the same runs


@dataclass
class Checked:
    """One re-trained run against its stored ledger."""

    variant: str
    seed: int
    run_id: str  # the stored run's
    differs: list[str]  # platform facts that differ: "key: stored → here"
    identical: bool  # every probability and class the same bits
    agreement: float  # share of test images with the same predicted class
    deltas: dict[str, float]  # metric: re-trained − stored
    right: tuple[np.ndarray, np.ndarray] = field(repr=False, default=None)  # (stored, re-trained) right per image


@dataclass
class Verified:
    experiment: str
    checks: list[Checked]
    margin: float
    alpha: float
    tost: object = None  # images.Equivalence, where some run was re-trained on another platform
    ok: bool = False
    line: str = ""

    def as_dict(self) -> dict:
        out = {
            "experiment": self.experiment,
            "ok": self.ok,
            "line": self.line,
            "margin": self.margin,
            "runs": [
                {k: v for k, v in dataclasses.asdict(c).items() if k != "right"} | {"same_platform": not c.differs}
                for c in self.checks
            ],
        }
        if self.tost is not None:
            out["tost"] = dataclasses.asdict(self.tost)
        return out


def verify(
    uri: str,
    name: str,
    runs: int = 2,
    margin: float | None = None,
    data_dir: str | None = None,
    console: Console | None = None,
) -> Verified:
    """Re-train `runs` sampled finished runs of experiment `name` (in `uri`) and compare their ledgers."""
    from harness.analysis import images
    from harness.tracking import experiment_tags, readback

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise UsageError(f"--runs: {runs!r} is not allowed; expected a whole number of runs, at least 1")
    if margin is not None and not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise UsageError(f"--margin: {margin!r} is not allowed; expected a positive number of points")
    readback.require_store(uri)
    analysis = experiment_tags.analysis_of(readback.experiment_tags(uri, name))
    margin = analysis.margin if margin is None else float(margin)
    finished = [r for r in readback.read_runs(uri, name) if r.status == "FINISHED"]
    if not finished:
        raise UsageError(f"verify: experiment {name!r} has no finished run in {uri!r}; nothing to re-check")
    ledgered = sorted((r for r in finished if r.predictions is not None and "probs" in r.predictions), key=_order)
    if not ledgered:
        raise UsageError(
            f"verify: no finished run of {name!r} stored class probabilities (its runs were recorded before the ledger); "
            "re-run them with `run --rerun` to verify"
        )
    chosen = sorted(random.Random(SAMPLE_SEED).sample(ledgered, min(runs, len(ledgered))), key=_order)
    console = console or Console()
    checks = []
    for r in chosen:
        console.line(f"re-training {r.variant} seed {r.seed} (run {r.run_id}) in a scratch store")
        again = _retrain(uri, r, data_dir)
        checks.append(_compare(r, again))
    out = Verified(name, checks, margin, analysis.alpha)
    elsewhere = [c for c in checks if c.differs]
    broken = [c for c in checks if not c.differs and not c.identical]
    if broken:
        named = ", ".join(f"{c.variant} seed {c.seed} (run {c.run_id})" for c in broken)
        out.line = f"verify: FAILED: on the same platform the re-trained ledger differs from the stored one: {named}"
    elif not elsewhere:
        out.ok = True
        out.line = (
            f"verify: ok: {len(checks)} re-trained run(s) on the same platform, every class probability bit-identical"
        )
    else:
        out.tost = images.equivalence([c.right for c in elsewhere], margin, analysis.alpha)
        t = out.tost
        out.ok = t.p < analysis.alpha
        word = "ok" if out.ok else "FAILED"
        what = "within" if out.ok else "not shown within"
        out.line = (
            f"verify: {word}: {len(elsewhere)} run(s) re-trained on another platform ({elsewhere[0].differs[0]}); "
            f"accuracy {t.delta:+.2f} points, {100 * (1 - 2 * analysis.alpha):.0f}% interval [{t.low:+.2f}, {t.high:+.2f}] "
            f"over {t.images:,} images, {what} ±{margin:g} points (TOST p {t.p:.3g})"
        )
    return out


def _order(r) -> tuple:
    return (r.variant, r.seed, r.run_id)


def _retrain(uri: str, r, data_dir: str | None):
    """The run re-trained from its stored configuration in a scratch store; its SeedRun."""
    from harness.running import experiment
    from harness.running.execution import Execution
    from harness.settings import experiment_file
    from harness.tracking import readback, store

    if "@" in r.variant:
        raise UsageError(
            f"verify: {r.variant} seed {r.seed} is a variance design's run; verify re-trains fixed designs' runs"
        )
    client = store.mlflow_client(uri)
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as tmp:
        scratch = Path(tmp)
        try:
            stored = Path(client.download_artifacts(r.run_id, "config.toml", str(scratch)))
        except Exception as e:  # noqa: BLE001 - the run's artifacts are gone or unreadable
            raise UsageError(
                f"verify: the configuration of run {r.run_id} cannot be read ({type(e).__name__}: {e})"
            ) from None
        table = experiment_file.read_toml(stored, "config.toml")
        for key in ("run", "design", "min_seeds", "max_seeds"):
            table.pop(key, None)
        table.update(
            variants=[r.variant], baseline=r.variant, seeds=[r.seed], tracking_uri=f"sqlite:///{scratch / 'mlflow.db'}"
        )
        table.update(reports_dir=str(scratch / "reports"), checkpoint_dir=str(scratch / "checkpoints"))
        if data_dir:
            table.setdefault("data", {})["dir"] = data_dir
        path = scratch / "experiment.toml"
        import tomli_w

        path.write_bytes(tomli_w.dumps(table).encode())
        cfg = experiment_file.load_experiment(str(path))
        quiet = Console(io.StringIO(), mode="plain")
        done = experiment.run(cfg, Execution(), quiet, command="python -m harness verify")
        if done.failed:
            raise UsageError(
                f"verify: re-training {r.variant} seed {r.seed} failed: {'; '.join(done.problems) or quiet.stream.getvalue()[-300:]}"
            )
        (again,) = [x for x in readback.read_runs(done.uri, cfg.name) if x.status == "FINISHED"]
    return again


def _compare(stored, again) -> Checked:
    from harness.tracking import names

    keys = sorted(k for k in stored.tags.keys() | again.tags.keys() if k.startswith(names.ENV_PREFIX))
    differs = [
        f"{k[len(names.ENV_PREFIX) :]}: {stored.tags.get(k, '?')} → {again.tags.get(k, '?')}"
        for k in keys
        if stored.tags.get(k) != again.tags.get(k)
    ]
    a, b = stored.predictions, again.predictions
    identical = (
        a["probs"].shape == b["probs"].shape
        and np.array_equal(a["probs"].view(np.uint16), b["probs"].view(np.uint16))
        and np.array_equal(a["selected"], b["selected"])
    )
    agreement = float(np.mean(a["selected"] == b["selected"])) if len(a["selected"]) == len(b["selected"]) else math.nan
    deltas = {m: again.metrics.get(m, math.nan) - stored.metrics.get(m, math.nan) for m in METRICS}
    right = (a["selected"] == a["labels"], b["selected"] == b["labels"])
    return Checked(stored.variant, stored.seed, stored.run_id, differs, identical, agreement, deltas, right)
