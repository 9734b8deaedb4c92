"""Running the (variant, seed) pairs as a Slurm job array: `run --executor slurm`.

The driver makes the variants' parent runs, then submits one array task per pair that has not
finished (through submitit's `map_array`), each training its pair with the same code and run key
as a local run (harness/running/remote.py). Checkpoints live in the experiment's checkpoint folder,
which must be on a file system the nodes share; so does the log folder beside them. A task that
Slurm preempts, or that nears its time limit, gets submitit's signal (USR2): it records its run as
interrupted, requeues itself and resumes from its last checkpoint. The driver waits, printing a line
as each task starts and ends, and names the log of any task that failed; with --detach it returns
at once and a last job, run when every task has ended, writes the report. submitit is an optional
extra: `pip install -e .[slurm]`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.base.errors import Terminated, UsageError
from harness.settings import checks

POLL_S = 2.0


@dataclasses.dataclass(frozen=True)
class SlurmRequest:
    """What each array task asks Slurm for, and whether the driver waits."""

    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    minutes: int = 60
    array_parallelism: int = 256
    setup: tuple[str, ...] = ()
    detach: bool = False


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--executor slurm: submitit is not installed; install the extra with `pip install -e .[slurm]`"
        ) from None
    return submitit


def parse_time(text: str) -> int:
    """A time limit as sbatch writes it (MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS[:MINUTES[:SECONDS]]) in whole minutes."""
    allowed = "expected minutes (90), H:MM:SS (1:30:00) or D-HH[:MM[:SS]] (2-00:00)"
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise UsageError(f"--time: {text!r} is not a time limit; {allowed}")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:
        seconds = a * 3600 + b * 60 + c
    elif b is not None:
        seconds = a * 60 + b
    else:
        seconds = a * 60
    # submitit asks Slurm for its signal 90 s before the limit: a shorter limit only requeues
    if not 5 * 60 <= seconds <= 365 * 86400:
        raise UsageError(f"--time: {text!r} is not allowed; give at least 5 minutes and at most a year ({allowed})")
    return -(-seconds // 60)


def check(request: SlurmRequest) -> None:
    """Before the store is touched: submitit and sbatch are here, and the request is one Slurm takes."""
    if request.partition is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", request.partition):
        raise UsageError(f"--partition: {request.partition!r} is not a partition name (letters, digits, _ . -)")
    for line in request.setup:
        if "\n" in line or not line.strip():
            raise UsageError(f"--slurm-setup: {line!r} is not allowed; give one non-empty shell line per flag")
    import_submitit()
    for tool in ("sbatch", "squeue"):
        if shutil.which(tool) is None:
            raise UsageError(
                f"--executor slurm: {tool} is not on PATH; run on a Slurm login node (or a machine with Slurm's client commands)"
            )


class PairTask:
    """One array task. submitit calls `checkpoint` when the task is preempted or nears its time
    limit: the same call is requeued, and it resumes from the pair's checkpoint."""

    def __call__(self, cfg, variant: str, seed: int, rerun: bool):
        from harness.running import remote

        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        if cfg.runtime.threads == 0 and cpus.isdigit():  # torch would take every core of the node, not the task's share
            cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, threads=int(cpus)))
        task = f"Slurm task {os.environ.get('SLURM_ARRAY_JOB_ID', '?')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '?')}"
        return remote.train_pair(cfg, variant, seed, None, rerun, task)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def portable(cfg, uri: str, request: SlurmRequest):
    """The settings as a node reads them: absolute paths (a task may start in another folder) and
    the store's resolved address; the CPU when no GPU is asked for."""
    from harness.data import loading
    from harness.tracking import addresses

    paths = dataclasses.replace(
        cfg.paths,
        checkpoint_dir=str(Path(cfg.paths.checkpoint_dir).resolve()),
        reports_dir=str(Path(cfg.paths.reports_dir).resolve()),
        data_dir=str(loading.data_dir(cfg.paths.data_dir).resolve()),
        tracking_uri=uri if not uri.startswith("sqlite:///") else f"sqlite:///{addresses.sqlite_path(uri).resolve()}",
    )
    kind, _, where = cfg.data.dataset.partition(":")
    # the key names the content
    data = (
        cfg.data
        if kind not in ("folder", "npz")
        else dataclasses.replace(cfg.data, dataset=f"{kind}:{Path(where).resolve()}")
    )
    components = tuple(str(Path(c).resolve()) if Path(c).is_file() else c for c in cfg.components)
    runtime = cfg.runtime if request.gpus_per_run else dataclasses.replace(cfg.runtime, device="cpu")
    return dataclasses.replace(
        cfg, paths=paths, runtime=runtime, data=data, components=type(cfg.components)(components)
    )


def run_on_slurm(runner, request: SlurmRequest) -> dict[tuple[str, int], str]:
    """Submit the unfinished pairs of `runner` (a runner.Runner) as one job array and, unless
    detached, wait for every task. Returns what went wrong with each pair that failed; the caller
    reads the outcomes from the store."""
    from harness.running.outcomes import finished
    from harness.settings import config

    submitit = import_submitit()
    cfg, console = runner.cfg, runner.console
    uri = runner.tracker.uri
    if uri.startswith("sqlite:///"):
        console.line(
            "note: every node writes to this SQLite file, which is safe only on one machine; give a cluster an MLflow "
            "tracking server (--tracking-uri http://HOST:PORT, docs/scaling-out.md)"
        )
    live = queue_of_name(f"harness-{cfg.name}")
    if live:
        raise UsageError(
            f"--executor slurm: experiment {cfg.name!r} still has {len(live)} Slurm task(s) queued or running ({', '.join(sorted(live)[:4])}); "
            f"their pairs would be trained twice. Wait for them (`squeue --me -n harness-{cfg.name}`) or stop them (`scancel --me -n harness-{cfg.name}`)"
        )
    for v in cfg.variants:  # parents are made here, once, so tasks never race to create one
        runner.parent(config.resolve(cfg, v, cfg.seeds[0]))
    pairs = []
    for v in cfg.variants:
        for s in cfg.seeds:
            done = [
                r for r in runner.tracker.runs_with_key(runner.key(config.resolve(cfg, v, s))) if r.status == "FINISHED"
            ]
            if done and not runner.rerun:
                o = finished(v, s, done[-1])
                console.line(
                    f"skip {v} seed {s}: already finished (run {done[-1].run_id}, test accuracy {o.test_acc:.2f})"
                )
            else:
                pairs.append((v, s))
    if not pairs:
        console.line("every pair has finished; nothing to submit")
        return {}
    sent = portable(cfg, uri, request)
    folder = Path(sent.paths.checkpoint_dir) / cfg.name / "slurm"
    executor = submitit.SlurmExecutor(folder=folder / "%j")
    executor.update_parameters(
        job_name=f"harness-{cfg.name}",
        time=request.minutes,
        cpus_per_task=request.cpus_per_run,
        array_parallelism=request.array_parallelism,
        stderr_to_stdout=True,
        setup=list(request.setup),
        **({"partition": request.partition} if request.partition else {}),
        **({"gpus_per_node": request.gpus_per_run} if request.gpus_per_run else {}),
    )
    try:
        jobs = executor.map_array(
            PairTask(), [sent] * len(pairs), [v for v, _ in pairs], [s for _, s in pairs], [runner.rerun] * len(pairs)
        )
    except Exception as e:  # noqa: BLE001 - sbatch's own message says what Slurm refused
        raise UsageError(f"--executor slurm: sbatch refused the job array: {str(e).strip().splitlines()[-1]}") from None
    array = jobs[0].job_id.split("_")[0]
    asked = f"{request.cpus_per_run} CPU, {request.gpus_per_run} GPU, {request.minutes} min"
    what = f"job array {array}" if len(jobs) > 1 else f"job {array}"
    console.line(
        f"submitted {len(pairs)} run(s) as Slurm {what} ({request.partition or 'default partition'}; each {asked}); "
        f"logs in {folder}/{array}*/"
    )
    if request.detach:
        flag = checks.experiment_flag(cfg.name)
        try:
            report = submit_report(submitit, sent, request, folder, array)
        except Exception as e:  # noqa: BLE001 - the array is submitted; only its report is not scheduled
            console.line(
                f"note: sbatch refused the report job ({_last_line(str(e))}); the tasks of {array} run, and "
                f"`python -m harness report {flag}` writes the report when they have ended"
            )
            return {}
        console.line(
            f"detached: `squeue -j {array}` shows the tasks; job {report} writes the report when they have all ended, "
            f"and `python -m harness report {flag}` rebuilds it at any time"
        )
        return {}
    return wait(runner, jobs, pairs, array)


def submit_report(submitit, cfg, request: SlurmRequest, folder: Path, array: str) -> str:
    """A job that runs once every task of `array` has ended, and writes the report."""
    from submitit.helpers import CommandFunction

    executor = submitit.SlurmExecutor(folder=folder / "%j")
    executor.update_parameters(
        job_name=f"harness-{cfg.name}-report",
        time=30,
        cpus_per_task=1,
        stderr_to_stdout=True,
        setup=list(request.setup),
        additional_parameters={"dependency": f"afterany:{array}"},
        **({"partition": request.partition} if request.partition else {}),
    )
    command = [
        sys.executable,
        "-m",
        "harness",
        "report",
        f"--experiment={cfg.name}",
        "--tracking-uri",
        cfg.paths.tracking_uri,
        "--reports-dir",
        cfg.paths.reports_dir,
    ]
    return executor.submit(CommandFunction(command, cwd=os.getcwd())).job_id


# pending reasons that never clear by waiting
NEVER_STARTS = {
    "PartitionConfig",
    "PartitionTimeLimit",
    "PartitionNodeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxWallDurationPerJobLimit",
    "AssocMaxWallDurationPerJobLimit",
}


def queue(*selector: str) -> dict[str, tuple[str, str]] | None:
    """(state, pending reason) of each task Slurm still holds that `selector` picks (`-j ARRAY` or
    `-n NAME`), e.g. {"12_0": ("RUNNING", "None")}; {} once Slurm has forgotten them; None when
    squeue could not answer (ask again later)."""
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-r", *selector, "-o", "%i %T %r"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return {} if "Invalid job id" in proc.stderr else None
    rows = [line.split(None, 2) for line in proc.stdout.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2] if len(r) > 2 else "") for r in rows}


def queue_of_name(name: str) -> dict[str, tuple[str, str]]:
    """The live tasks of this user's jobs named `name` (not its report job, which is named apart):
    another user's experiment of the same name on a shared cluster is none of ours."""
    import getpass

    return queue("-n", name, "-u", getpass.getuser()) or {}


def _last_line(text: str) -> str:
    """The exception line of a traceback that submitit wraps (between its dashed lines), else the last line."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    dashed = [i for i, line in enumerate(lines) if set(line.strip()) == {"-"}]
    if len(dashed) >= 2:
        lines = lines[dashed[0] + 1 : dashed[1]]
    return lines[-1].strip() if lines else "no message"


def wait(runner, jobs: list, pairs: list[tuple[str, int]], array: str) -> dict[tuple[str, int], str]:
    """Wait for every task, printing as each starts, is requeued and ends; mark the run of a task
    that ended without a result KILLED, naming its log."""
    console = runner.console
    console.plan_runs(len(pairs), runner.cfg.train.epochs)
    waiting = {job.job_id: (job, pair) for job, pair in zip(jobs, pairs)}
    seen: dict[str, tuple[str, str]] = {}
    missing: dict[str, int] = {}
    failures: dict[tuple[str, int], str] = {}
    doomed: dict[str, str] = {}
    started: set[str] = set()  # tasks seen running
    announced: set[str] = set()  # tasks whose requeue was said, until they run again
    try:
        while waiting:
            states = queue("-j", array)
            for job_id, (job, (variant, seed)) in list(waiting.items()):
                state, reason = ("?", "") if states is None else states.get(job_id, ("", ""))
                before = seen.get(job_id, ("", ""))
                if state not in ("", "?") and (state, reason) != before:
                    # a requeue between two polls shows only as a second start
                    requeued = (
                        state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
                        and before[0] in ("RUNNING", "COMPLETING")
                        or state == "RUNNING"
                        and before[0] != "RUNNING"
                        and job_id in started
                    )
                    if requeued and job_id not in announced:
                        console.line(
                            f"{variant} seed {seed}: Slurm task {job_id} was requeued; it resumes from its checkpoint"
                        )
                        announced.add(job_id)
                    if state == "RUNNING" and before[0] != "RUNNING":
                        console.line(f"{variant} seed {seed}: running as Slurm task {job_id}")
                        started.add(job_id)
                        announced.discard(job_id)
                    elif state == "PENDING" and reason in NEVER_STARTS and job_id not in doomed:
                        doomed[job_id] = (
                            f"Slurm cannot start task {job_id}: it is pending with reason {reason} (the request exceeds what the partition allows)"
                        )
                        subprocess.run(["scancel", job_id], capture_output=True, timeout=60)
                    seen[job_id] = (state, reason)
                missing[job_id] = missing.get(job_id, 0) + 1 if state == "" else 0
                if job.paths.result_pickle.exists() or missing[job_id] >= 2:  # gone from the queue twice: it ended
                    del waiting[job_id]
                    error = ended(runner, job, variant, seed, doomed.get(job_id, ""))
                    if error:
                        failures[(variant, seed)] = error
            if waiting:
                time.sleep(POLL_S)
    except (KeyboardInterrupt, Terminated):
        console.line(
            f"stopped waiting; the tasks go on (`squeue -j {array}`; `scancel {array}` stops them), and "
            f"`python -m harness report {checks.experiment_flag(runner.cfg.name)}` writes the report when they have ended"
        )
        raise
    return failures


def ended(runner, job, variant: str, seed: int, why: str = "") -> str:
    """Print how one task ended; what went wrong, or "" when its run finished."""
    from harness.running import remote

    console, log = runner.console, job.paths.stdout
    if job.paths.result_pickle.exists():
        try:
            outcome = job.result()
        except Exception as e:  # noqa: BLE001 - the task raised: its traceback is in the log
            error = f"Slurm task {job.job_id} failed: {_last_line(str(e))}; log: {log}"
        else:
            if outcome.status == "FINISHED":
                how = "skipped: already finished" if outcome.note else f"test accuracy {outcome.test_acc:.2f}"
                console.run_done(f"finished {variant} seed {seed} as Slurm task {job.job_id}: {how}")
                return ""
            error = f"{outcome.error}; log: {log}"
    else:
        error = (
            why
            or f"Slurm task {job.job_id} ended without a result (cancelled, out of memory or out of time); log: {log}"
        )
    # its process is gone: the next command resumes it from its checkpoint
    remote.close_lost(runner, variant, seed, error)
    console.run_done(f"FAILED {variant} seed {seed}: {error}")
    return error
