"""Optuna tuning, fitted to the ablation: a per-variant search over the space the experiment file
declares, pruning from per-epoch validation accuracy, resumable studies, several worker processes,
one MLflow parent run per study with a child run per trial, and the best parameters written where
`run --tuned` finds them. The objective reads validation data only: the test set is not loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import optuna
import tomli_w

import harness.variants as registry
from harness.base import parent
from harness.base.errors import Terminated, UsageError, one_of
from harness.base.files import atomic_write
from harness.data.loading import Loaded
from harness.running.assembly import assemble
from harness.settings import checks, config, search
from harness.settings.config import ExperimentConfig
from harness.settings.search import SearchParam
from harness.tracking import names, store
from harness.training import engine
from harness.tuning import storage
from harness.tuning.storage import open_storage

Pruner = Literal["median", "percentile", "hyperband", "none"]
MLFLOW_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


@dataclass(frozen=True)
class TuneRequest:
    variant: str
    trials: int  # the study's total, counting trials from earlier invocations
    seeds: tuple[int, ...]  # every trial trains each of these; the objective is their mean
    timeout: float | None  # seconds, for this invocation
    workers: int
    study: str
    storage: str
    pruner: str


def check_request(cfg: ExperimentConfig, req: TuneRequest) -> None:
    if "+" in req.variant and all(part.strip() in registry.names() for part in req.variant.split("+")):
        parts = [part.strip() for part in req.variant.split("+")]
        raise UsageError(
            f"--variant: {req.variant!r} composes {len(parts)} components; tune searches one component's parameters "
            f"at a time: tune {' and '.join(parts)} one by one"
        )
    if req.variant not in registry.names():
        raise UsageError(f"--variant: {registry.unknown_message(req.variant)}")
    search.check(cfg)
    if not search.space(cfg, req.variant):
        raise UsageError(
            f"search.{req.variant}: experiment {cfg.name!r} declares no search space for {req.variant!r}; "
            f"add a [search.{req.variant}] table (see harness/experiments/default.toml)"
        )
    if not 1 <= req.trials <= 100_000:
        raise UsageError(f"--trials: {req.trials} is not allowed; expected an integer from 1 to 100000")
    if not 1 <= req.workers <= 256:
        raise UsageError(f"--workers: {req.workers} is not allowed; expected an integer from 1 to 256")
    if req.timeout is not None and not (math.isfinite(req.timeout) and req.timeout > 0):
        raise UsageError(f"--timeout: {req.timeout} is not allowed; expected seconds > 0")
    if not checks.CHECKS["name"][1](req.study):
        raise UsageError(f"--study: {req.study!r} is not allowed; expected {checks.NAME_RULE}")
    one_of("--pruner", req.pruner, Pruner)
    storage.check(req.storage)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        "percentile": lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=2),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }[name]()


def load_study(req: TuneRequest, worker: int = 0) -> optuna.Study:
    storage = open_storage(req.storage)
    seed = int(hashlib.sha256(f"{req.study}:{worker}:{time.time_ns()}".encode()).hexdigest()[:8], 16)
    return optuna.create_study(
        study_name=req.study,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        pruner=make_pruner(req.pruner),
        sampler=optuna.samplers.TPESampler(seed=seed),
    )


OWNER = f"{socket.gethostname()}:{os.getpid()}"


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a dead process on this machine are marked FAIL, so they count once;
    returns their numbers."""
    from harness.running.claims import process_alive

    stale = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get(names.WORKER_ATTR, "")
        if owner and not process_alive(*owner.split(":", 1)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            stale.append(t.number)
    return stale


def fail_stale_trial_runs(tracker, parent_id: str, numbers: list[int]) -> None:
    """The MLflow runs of trials found dead follow their trials' final state: FAILED, with why."""
    for number in numbers:
        for run_id in tracker.run_ids(
            f"tags.`harness.role` = 'trial' and tags.`mlflow.parentRunId` = '{parent_id}' "
            f"and tags.`harness.trial` = '{number}' and attributes.status = 'RUNNING'"
        ):
            tracker.set_tags(
                run_id, {names.TRIAL_STATE_TAG: "FAIL", names.ERROR_TAG: "its process died while the trial ran"}
            )
            tracker.finish(run_id, "FAILED")


def suggest(trial: optuna.Trial, space: list[SearchParam]) -> dict:
    values = {}
    for p in space:
        if p.choices:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.integer:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return values


def optimize(
    cfg: ExperimentConfig,
    data: Loaded,
    req: TuneRequest,
    study: optuna.Study,
    n_trials: int,
    parent_id: str,
    tracker,
    say,
) -> None:
    """Run up to `n_trials` trials of the study in this process, on the experiment's data (no test set)."""
    space = search.space(cfg, req.variant)
    d, dataset = data.tensors, data.source.dataset

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(names.WORKER_ATTR, OWNER)
        values = suggest(trial, space)
        tuned = dataclasses.replace(
            cfg, params={**cfg.params, req.variant: {**cfg.params.get(req.variant, {}), **values}}
        )
        specs = [config.resolve(tuned, req.variant, seed) for seed in req.seeds]
        epochs = specs[0].train.epochs
        run_id = tracker.child_run(
            parent_id,
            "trial",
            f"{req.variant}-trial{trial.number}",
            {names.VARIANT_TAG: req.variant, names.TRIAL_TAG: str(trial.number)},
            {**specs[0].flat(), **{f"searched.{k}": v for k, v in values.items()}},
        )
        state, reason = "FAIL", ""
        try:
            scores = []
            for i, spec in enumerate(specs):

                def on_progress(p: engine.Progress, i: int = i) -> None:
                    if p.phase != "epoch":
                        return
                    step = i * epochs + p.epoch  # epochs counted across the trial's seeds
                    tracker.log_metrics(run_id, names.epoch_metrics(p.stats), step=step)
                    trial.report(p.stats.val_acc, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(
                            f"validation accuracy {p.stats.val_acc:.2f} at epoch {p.epoch} of seed {spec.seed}"
                        )

                build, pieces = assemble(spec, dataset)
                _, result = engine.train(
                    build,
                    d.x_train,
                    d.y_train,
                    d.x_val,
                    d.y_val,
                    spec.train,
                    spec.seed,
                    on_progress,
                    runtime=cfg.runtime,
                    pieces=pieces,
                    sources=spec.sources,
                )
                scores.append(result.history[result.selected_epoch - 1].val_acc)
            value = sum(scores) / len(scores)
            tracker.log_metrics(
                run_id, {"objective": value, **{f"val_acc_selected_seed{s.seed}": x for s, x in zip(specs, scores)}}
            )
            state = "COMPLETE"
            say(f"trial {trial.number}: COMPLETE, validation accuracy {value:.2f}, {format_params(values)}")
            return value
        except optuna.TrialPruned as e:
            state, reason = "PRUNED", str(e)
            say(f"trial {trial.number}: PRUNED ({reason}), {format_params(values)}")
            raise
        except engine.NonFiniteLoss as e:
            reason = f"non-finite loss in {req.variant}: {e}"
            trial.set_user_attr("fail_reason", reason)
            say(f"trial {trial.number}: FAIL ({reason}), {format_params(values)}")
            raise
        except BaseException as e:
            reason = f"{type(e).__name__}: {e}"
            trial.set_user_attr("fail_reason", reason)
            raise
        finally:
            tracker.set_tags(run_id, {names.TRIAL_STATE_TAG: state, **({names.ERROR_TAG: reason} if reason else {})})
            tracker.finish(run_id, MLFLOW_STATUS[state])

    start = time.monotonic()
    for _ in range(n_trials):
        if req.timeout is not None and time.monotonic() - start > req.timeout:
            break
        # count and ask under one lock: --trials is the study's total under concurrency too
        with storage.trial_slot(req.storage, req.study):
            if counted(study) >= req.trials:
                break
            trial = storage.ask(study, req.storage)
        try:
            with storage.heartbeat(study, trial, req.storage):
                value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except engine.NonFiniteLoss:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        except BaseException:  # Ctrl-C, SIGTERM, a crash: the trial fails and the process stops
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)


def format_params(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def counted(study: optuna.Study) -> int:
    """Trials that count towards --trials: finished ones (any state) and live running ones."""
    return len(study.get_trials(deepcopy=False))


def coordinate(
    cfg: ExperimentConfig, data: Loaded, uri: str, req: TuneRequest, worker_args: list[str], say
) -> optuna.Study:
    """Resume or create the study, bring it to `req.trials` trials with `req.workers` processes
    (each runs `python -m harness` with `worker_args` and its share)."""
    study = load_study(req)
    stale = fail_stale_trials(study)
    if stale:
        say(f"marked {len(stale)} trial(s) FAIL: their process had died while they ran")
    tracker = store.Tracker(uri, cfg.name, cfg.checkpoint_folder)
    parent_id = study_parent(tracker, req)
    fail_stale_trial_runs(tracker, parent_id, stale)
    remaining = max(0, req.trials - counted(study))
    say(
        f"study {req.study}: {counted(study)} trial(s) so far, {remaining} to run with {req.workers} worker(s); storage {req.storage}"
    )
    if remaining and req.workers == 1:
        optimize(cfg, data, req, study, remaining, parent_id, tracker, say)
    elif remaining:
        shares = [remaining // req.workers + (1 if i < remaining % req.workers else 0) for i in range(req.workers)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "harness", *worker_args, "--worker-share", str(n), "--parent-run", parent_id],
                env={**os.environ, **parent.child_env()},
            )
            for n in shares
            if n
        ]
        try:
            codes = [p.wait() for p in procs]
        except (KeyboardInterrupt, Terminated):  # the workers stop too: each marks its trial and run, then exits
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait()
            # A worker stopped between creating a trial's run and entering the trial leaves that run
            # RUNNING and its trial owned by a dead process: mark both, so nothing stays RUNNING.
            fail_stale_trials(load_study(req))
            for run_id in tracker.run_ids(
                f"tags.`harness.role` = 'trial' and tags.`mlflow.parentRunId` = '{parent_id}' "
                "and attributes.status = 'RUNNING'"
            ):
                tracker.set_tags(
                    run_id,
                    {
                        names.TRIAL_STATE_TAG: "FAIL",
                        names.ERROR_TAG: "stopped (SIGINT or SIGTERM) as the trial started",
                    },
                )
                tracker.finish(run_id, "FAILED")
            tracker.finish(parent_id, "KILLED")
            raise
        dead = [(p.pid, code) for p, code in zip(procs, codes) if code]
        if dead:  # a worker killed (SIGKILL, out of memory) or crashed: its trial counts as FAIL, and this process runs the rest
            study = load_study(req)
            stale = fail_stale_trials(study)
            fail_stale_trial_runs(tracker, parent_id, stale)
            ended = {t.number for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.RUNNING}
            for run_id, number in tracker.tagged_runs(
                f"tags.`harness.role` = 'trial' and tags.`mlflow.parentRunId` = '{parent_id}' "
                "and attributes.status = 'RUNNING'",
                names.TRIAL_TAG,
            ):
                # failed by another process's heartbeat check before this one looked
                if number.isdigit() and int(number) in ended:
                    tracker.set_tags(
                        run_id, {names.TRIAL_STATE_TAG: "FAIL", names.ERROR_TAG: "its process died while the trial ran"}
                    )
                    tracker.finish(run_id, "FAILED")
            left = max(0, req.trials - counted(study))
            say(
                f"worker(s) {', '.join(f'{pid} (exit {code})' for pid, code in dead)} stopped early; "
                f"{len(stale)} trial(s) they held marked FAIL; running the {left} trial(s) left here"
            )
            if left:
                optimize(cfg, data, req, study, left, parent_id, tracker, say)
    study = load_study(req)
    tracker.log_metrics(parent_id, study_numbers(study))
    tracker.finish(parent_id, "FINISHED")
    return study


def study_parent(tracker, req: TuneRequest) -> str:
    """The study's MLflow parent run (one per study name, reopened when the study resumes)."""
    run_id, created = tracker.named_run(
        "study",
        f"tune-{req.study}",
        {names.STUDY_TAG: req.study},
        {names.VARIANT_TAG: req.variant, names.STORAGE_TAG: req.storage, names.PRUNER_TAG: req.pruner},
    )
    if not created:
        tracker.reopen(run_id)
    return run_id


def study_numbers(study: optuna.Study) -> dict[str, float]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    out = {f"trials_{s.lower()}": float(states.count(s)) for s in ("COMPLETE", "PRUNED", "FAIL")}
    out["trials"] = float(len(states))
    if out["trials_complete"]:
        out["best_value"] = study.best_value
        out["best_trial"] = float(study.best_trial.number)
    return out


def write_results(study: optuna.Study, req: TuneRequest, folder: Path) -> tuple[Path, Path]:
    """The best parameters (`<variant>.toml`, for `run --tuned`) and the tuning section
    (`<variant>.md` with Optuna's matplotlib plots) in `folder`."""
    from optuna.visualization import matplotlib as ovm

    from harness.report.plots import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    numbers = study_numbers(study)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise UsageError(f"tune: study {req.study!r} has no completed trial yet; nothing to write")
    best = study.best_trial
    header = (
        f"# Best parameters of study {req.study!r}: trial {best.number}, mean validation accuracy {best.value:.4f}\n"
        f"# over seeds {', '.join(map(str, req.seeds))}. Use with: python -m harness run --tuned (or --params-from this file).\n"
    )
    table = {
        "tuning": {"study": req.study, "trial": best.number, "value": best.value, "trials": int(numbers["trials"])},
        "params": {req.variant: dict(sorted(best.params.items()))},
    }
    params_path = atomic_write(folder / f"{req.variant}.toml", header + tomli_w.dumps(table))

    images = []
    plots = [
        (
            "history",
            ovm.plot_optimization_history,
            "Objective (mean validation accuracy at the selected epoch) of each trial, with the best so far.",
        ),
        ("slice", ovm.plot_slice, "Objective against each searched parameter, one dot per completed trial."),
    ]
    if len(complete) >= 2 and len(best.params) >= 2:
        plots.insert(
            1,
            (
                "importance",
                ovm.plot_param_importances,
                "How much of the objective's variation each parameter explains (fANOVA).",
            ),
        )
    for name, fn, caption in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few trials for this view
            fig = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
            fig.set_size_inches(max(8.0, 4.5 * len(best.params) + 1.5) if name == "slice" else 8.0, 3.6)
            fig.tight_layout()
        path = folder / f"{req.variant}_{name}.png"
        save_figure(fig, path, dpi=100)
        images.append((path.name, caption))
    md = [
        f"### Tuning `{req.variant}` (study `{req.study}`)",
        "",
        f"{int(numbers['trials'])} trials: {int(numbers['trials_complete'])} complete, {int(numbers['trials_pruned'])} pruned, "
        f"{int(numbers['trials_fail'])} failed. Best: trial {best.number}, mean validation accuracy {best.value:.2f} "
        f"over seed(s) {', '.join(map(str, req.seeds))}, with "
        + ", ".join(
            f"`{k} = {v:.4g}`" if isinstance(v, float) else f"`{k} = {v}`" for k, v in sorted(best.params.items())
        )
        + f". Parameters file: `tuning/{params_path.name}`; the test set was not read.",
        "",
    ]
    for name, caption in images:
        md += [f"![{name}](tuning/{name})", "", f"*{caption}*", ""]
    md_path = atomic_write(folder / f"{req.variant}.md", "\n".join(md))
    return params_path, md_path
