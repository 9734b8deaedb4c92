"""`verify`: re-train a few sampled finished runs of an experiment in a scratch store (never the
experiment's own) and compare their ledgers (`predictions.npz`) with the stored ones.

- On the same platform (every `harness.env.*` fact the run recorded: torch and CUDA versions,
  device, thread count, determinism flags; the library versions and the code's commit) every
  class probability and predicted class must be the same bits: the check passes only then.
- Where bits are not expected to match (another platform; a run trained in a fused group, which
  rounds differently than a run alone; one resumed on another device type; `determinism = "fast"`)
  the check reports how many images get the same class, each metric's difference, and a TOST
  (harness/analysis/images.py `equivalence`) of the per-image accuracy difference, all such runs'
  images pooled, against ±margin points: by default the experiment's `analysis.margin`, the
  smallest difference its verdicts treat as real.
- A re-trained run on other data or another split, or one that fails, fails the check, named.

Each run re-trains from the configuration it stored (`config.toml`), restricted to its variant and
seed (the variance design's `v@SOURCE` runs are not sampled), so it takes as long as that run did.
The experiment's store is only read (reading a moved store points its artifacts at their new
place, as `report` does)."""

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
from harness.tracking import names

METRICS = ("test_acc", "test_nll", "test_ece", "test_brier")
SAMPLE_SEED = 0  # which runs are sampled: the same ones on every machine, so two verifiers check the same runs


@dataclass
class Checked:
    """One re-trained run against its stored ledger."""

    variant: str
    seed: int
    run_id: str  # the stored run's
    differs: list[str]  # why the bits may differ: platform facts ("key: stored → here"), fusing, ...
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
        return _no_nan(out)


def _no_nan(x):
    """JSON without NaN (strict parsers refuse it): an undefined number is null."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


class Failed(Exception):
    """A sampled run could not be re-checked (its re-training failed, or it read other data)."""


def verify(
    uri: str,
    name: str,
    runs: int = 2,
    margin: float | None = None,
    data_dir: str | None = None,
    console: Console | None = None,
    device: str | None = None,
) -> Verified:
    """Re-train `runs` sampled finished runs of experiment `name` (in `uri`) and compare their
    ledgers. `data_dir`, `device`: where the data is and what to train on, when not as the runs did."""
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
    ledgered = [r for r in finished if images.with_probs(r.predictions)]
    if not ledgered:
        raise UsageError(
            f"verify: no finished run of {name!r} stored class probabilities (its runs were recorded before the ledger); "
            "re-run them with `run --rerun` to verify"
        )
    fixed = sorted((r for r in ledgered if "@" not in r.variant), key=_order)  # v@SOURCE: a variance design's
    if not fixed:
        raise UsageError(
            f"verify: every run of {name!r} with a ledger is a variance design's (v@SOURCE); verify re-trains fixed designs' runs"
        )
    chosen = sorted(random.Random(SAMPLE_SEED).sample(fixed, min(runs, len(fixed))), key=_order)
    console = console or Console()
    checks = []
    out = Verified(name, checks, margin, analysis.alpha)
    for r in chosen:
        console.line(f"re-training {r.variant} seed {r.seed} (run {r.run_id}) in a scratch store")
        try:
            again, determinism = _retrain(uri, r, data_dir, device)
            checks.append(_compare(r, again, determinism))
        except Failed as e:
            out.line = f"verify: FAILED: {r.variant} seed {r.seed} (run {r.run_id}): {e}"
            return out
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
            f"verify: {word}: {len(elsewhere)} run(s) whose bits are not expected to match ({elsewhere[0].differs[0]}); "
            f"accuracy {t.delta:+.2f} points, {100 * (1 - 2 * analysis.alpha):.0f}% interval [{t.low:+.2f}, {t.high:+.2f}] "
            f"over {t.images:,} images, {what} ±{margin:g} points (TOST p {t.p:.3g})"
        )
    return out


def _order(r) -> tuple:
    return (r.variant, r.seed, r.run_id)


def _retrain(uri: str, r, data_dir: str | None, device: str | None):
    """The run re-trained from its stored configuration in a scratch store: its SeedRun and its determinism setting."""
    from harness.running import experiment
    from harness.running.execution import Execution
    from harness.settings import experiment_file
    from harness.tracking import readback, store

    client = store.mlflow_client(uri)
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as tmp:
        scratch = Path(tmp)
        try:
            stored = Path(client.download_artifacts(r.run_id, "config.toml", str(scratch)))
        except Exception as e:  # noqa: BLE001 - the run's artifacts are gone or unreadable
            raise Failed(f"its configuration cannot be read ({type(e).__name__}: {e})") from None
        table = experiment_file.read_toml(stored, "config.toml")
        for key in ("run", "design", "min_seeds", "max_seeds"):
            table.pop(key, None)
        if isinstance(table.get("seeds"), dict):  # a [seeds] table: its pinned sources stay as the run had them
            table["seeds"]["runs"] = [r.seed]
        else:
            table["seeds"] = [r.seed]
        table.update(variants=[r.variant], baseline=r.variant, tracking_uri=f"sqlite:///{scratch / 'mlflow.db'}")
        table.update(reports_dir=str(scratch / "reports"), checkpoint_dir=str(scratch / "checkpoints"))
        if data_dir:
            table.setdefault("data", {})["dir"] = data_dir
        if device:
            table.setdefault("train", {})["device"] = device
        path = scratch / "experiment.toml"
        import tomli_w

        path.write_bytes(tomli_w.dumps(table).encode())
        cfg = experiment_file.load_experiment(str(path))
        quiet = Console(io.StringIO(), mode="plain")
        done = experiment.run(cfg, Execution(), quiet, command="python -m harness verify", report=False)
        failed = [o for o in done.outcomes if o.status != "FINISHED"]
        if failed:
            raise Failed(f"its re-training did not finish ({failed[0].status}: {failed[0].error or 'see above'})")
        (again,) = [x for x in readback.read_runs(done.uri, cfg.name) if x.status == "FINISHED"]
    return again, cfg.runtime.determinism


FACTS = (names.COMMIT_TAG,)  # beside every harness.env.* and harness.version.* tag
SAME_DATA = (names.DATASET_TAG, names.SPLIT_TAG)


def _compare(stored, again, determinism: str) -> Checked:
    """`again`, the re-trained run (with its `determinism` setting), against the `stored` one."""
    from harness.analysis import images

    for key in SAME_DATA:
        if stored.tags.get(key) != again.tags.get(key):
            raise Failed(
                f"re-trained on other data: {key} is {again.tags.get(key)} here, {stored.tags.get(key)} stored"
            )
    a, b = stored.predictions, again.predictions
    if not images.same_images([a, b]):
        raise Failed("the re-trained ledger is not of the stored one's test set (other labels or another order)")
    keys = sorted(
        k
        for k in stored.tags.keys() | again.tags.keys()
        if k.startswith((names.ENV_PREFIX, names.VERSION_PREFIX)) or k in FACTS
    )
    differs = [
        f"{k.removeprefix(names.ENV_PREFIX)}: {stored.tags.get(k, '?')} → {again.tags.get(k, '?')}"
        for k in keys
        if stored.tags.get(k) != again.tags.get(k)
    ]
    differs += _bits_not_expected(stored, determinism)
    identical = np.array_equal(a["probs"].view(np.uint16), b["probs"].view(np.uint16)) and np.array_equal(
        a["selected"], b["selected"]
    )
    agreement = float(np.mean(a["selected"] == b["selected"]))
    deltas = {m: again.metrics.get(m, math.nan) - stored.metrics.get(m, math.nan) for m in METRICS}
    right = (a["selected"] == a["labels"], b["selected"] == b["labels"])
    return Checked(stored.variant, stored.seed, stored.run_id, differs, identical, agreement, deltas, right)


def _bits_not_expected(stored, determinism: str) -> list[str]:
    """Why a run's own bits are not expected back even on its platform (docs/performance.md, docs/reliability.md)."""
    why = []
    if stored.tags.get(names.FUSED_TAG):
        why.append(f"trained in a fused group of {stored.tags[names.FUSED_TAG]}, re-trained alone")
    if determinism == "fast" or stored.tags.get(names.ENV_PREFIX + "cudnn_benchmark") == "True":
        why.append("determinism = fast")
    if "from a checkpoint written on" in stored.tags.get(names.NOTE_TAG, ""):  # engine.device_note
        why.append(f"resumed on another device type ({stored.tags[names.NOTE_TAG]})")
    return why
