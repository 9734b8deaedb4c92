"""A tuning session as library functions, what `python -m harness tune` and `harness.tune(...)` both
call: `request` (the study's settings, checked), `tune` (resume or create the study, bring it to its
trials with its workers, write the best parameters and the report) and `work` (one worker's share).
Workers are processes running `tune` on the resolved configuration written as an experiment file."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Callable

from harness.base import credentials
from harness.running import preflight
from harness.settings import config
from harness.settings.config import ExperimentConfig
from harness.tuning import tuner
from harness.tuning.tuner import TuneRequest


@dataclasses.dataclass(frozen=True)
class Tuned:
    """What a session left: the Optuna study, the best parameters' file (for `run --params-from`)
    and the report's path (None while the experiment has no `run` to report)."""

    study: object  # optuna.Study
    params_path: Path
    report: Path | None


def request(
    cfg: ExperimentConfig,
    variant: str,
    trials: int = 20,
    seeds: tuple[int, ...] | None = None,
    timeout: float | None = None,
    workers: int = 1,
    study: str | None = None,
    storage: str | None = None,
    pruner: str = "median",
) -> TuneRequest:
    """The study's settings with their defaults (the experiment's first seed, the study
    EXPERIMENT-VARIANT in optuna/EXPERIMENT.journal), checked before any work."""
    req = TuneRequest(
        variant=variant,
        trials=trials,
        seeds=tuple(seeds) if seeds else cfg.seeds[:1],
        timeout=timeout,
        workers=workers,
        study=study or f"{cfg.name}-{variant}",
        storage=storage or str(Path("optuna") / f"{cfg.name}.journal"),
        pruner=pruner,
    )
    tuner.check_request(cfg, req)
    return req


def masked_print(text: str) -> None:
    """What tuning says, with any password in an address masked (harness/base/credentials.py)."""
    print(credentials.mask(text), flush=True)


def tune(cfg: ExperimentConfig, req: TuneRequest, say: Callable[[str], None] | None = None) -> Tuned:
    """Bring the study to `req.trials` trials (this process, or `req.workers` processes), then write
    the best parameters and rebuild the report (it gains a tuning section once the experiment has runs)."""
    from harness.base.errors import UsageError
    from harness.report import markdown

    say = say or masked_print
    ready = preflight.prepare(cfg, with_test=False)  # tuning never loads the test set onto the device
    with tempfile.TemporaryDirectory(prefix="harness-") as folder:
        path = Path(folder) / f"{cfg.name}.toml"
        path.write_text(config.to_toml(cfg), encoding="utf-8")
        study = tuner.coordinate(cfg, ready.data, ready.uri, req, _worker_args(path, req), say)
    params_path, _ = tuner.write_results(study, req, cfg.reports_folder / "tuning")
    best = study.best_trial
    say(f"best: trial {best.number}, validation accuracy {best.value:.2f}, {tuner.format_params(best.params)}")
    say(f"parameters: {params_path}")
    try:
        report = markdown.build(ready.uri, cfg.name, cfg.reports_folder)
        say(f"report: {report} and {report.with_suffix('.html').name}")
    except UsageError:
        report = None  # no `run` in this experiment yet: the tuning section joins the report when there is one
    return Tuned(study, params_path, report)


def work(
    cfg: ExperimentConfig, req: TuneRequest, share: int, parent_run: str, say: Callable[[str], None] | None = None
) -> None:
    """One worker process of a session: run `share` of its trials under the session's parent run."""
    say = say or masked_print
    from harness.tracking import store

    ready = preflight.prepare(cfg, with_test=False)
    tracker = store.Tracker(ready.uri, cfg.name, cfg.checkpoint_folder)
    tuner.optimize(cfg, ready.data, req, tuner.load_study(req, worker=os.getpid()), share, parent_run, tracker, say)


def _worker_args(path: Path, req: TuneRequest) -> list[str]:
    """The `tune` command a worker runs: the experiment file `path` and the study's settings."""
    seeds = ",".join(map(str, req.seeds)) + ("," if len(req.seeds) == 1 else "")  # one seed stays a list
    args = ["tune", "--experiment", str(path), "--variant", req.variant, "--trials", str(req.trials), "--seeds", seeds]
    args += ["--study", req.study, "--storage", req.storage, "--pruner", req.pruner]
    return args + (["--timeout", str(req.timeout)] if req.timeout is not None else [])
