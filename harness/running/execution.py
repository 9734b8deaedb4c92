"""Where and how `run` trains, apart from the experiment's settings: the executor and its
options (`Execution`), checked before any work starts (`check`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from harness.base.errors import UsageError, one_of

Executor = Literal["local", "ray", "slurm"]
SLURM_ONLY = ("partition", "time", "array_parallelism", "slurm_setup", "detach")


@dataclasses.dataclass(frozen=True)
class Execution:
    """The `run` command's flags that are not settings of the experiment (its runs' keys never see
    them): `executor` and its options, how many processes share a device, and --rerun/--redesign."""

    executor: Executor = "local"
    jobs_per_device: int = 1
    ray_address: str | None = None
    gpus_per_run: float | None = None  # ray: a fraction (default 0.25 with GPUs); slurm: whole GPUs (default 0)
    cpus_per_run: float = 1.0
    partition: str | None = None  # slurm's options from here on
    time: str | None = None
    array_parallelism: int | None = None
    slurm_setup: tuple[str, ...] = ()
    detach: bool = False
    rerun: bool = False
    redesign: bool = False


def check(ex: Execution):
    """Refuse a request that cannot work, in one line; the Slurm request for --executor slurm, else None."""
    one_of("--executor", ex.executor, Executor)
    if not isinstance(ex.jobs_per_device, int) or not 1 <= ex.jobs_per_device <= 64:
        raise UsageError(f"--jobs-per-device: {ex.jobs_per_device} is not allowed; expected an integer from 1 to 64")
    if ex.executor != "slurm":
        given = [a for a in SLURM_ONLY if getattr(ex, a) not in (None, False, (), [])]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')}: only with --executor slurm")
    if ex.executor == "ray" and not ex.ray_address:
        raise UsageError(
            "--ray-address: required with --executor ray (the cluster's head, e.g. 10.0.0.5:6379, or auto)"
        )
    if ex.ray_address and ex.executor != "ray":
        raise UsageError("--ray-address: only with --executor ray")
    if ex.gpus_per_run is not None and not 0 <= ex.gpus_per_run <= 8:
        raise UsageError(f"--gpus-per-run: {ex.gpus_per_run} is not allowed; expected a number from 0 to 8")
    if not 0 < ex.cpus_per_run <= 256:
        raise UsageError(f"--cpus-per-run: {ex.cpus_per_run} is not allowed; expected a number above 0, at most 256")
    if ex.executor != "local" and ex.jobs_per_device > 1:
        raise UsageError(
            f"--jobs-per-device: only with the local executor; with --executor {ex.executor} each run is a task of its own"
        )
    if ex.jobs_per_device > 1 and ex.rerun:
        raise UsageError(
            "--rerun: not allowed with --jobs-per-device > 1 (each process would train the others' runs again); rerun with one process"
        )
    if ex.executor == "ray":  # before the store is created
        from harness.running import ray_executor

        ray_executor.import_ray()
        return None
    return _slurm(ex) if ex.executor == "slurm" else None


def _slurm(ex: Execution):
    from harness.running import slurm_executor

    for flag, value in (("--gpus-per-run", ex.gpus_per_run), ("--cpus-per-run", ex.cpus_per_run)):
        if value is not None and value != int(value):
            raise UsageError(
                f"{flag}: {value:g} is not allowed with --executor slurm; Slurm gives whole CPUs and GPUs (e.g. 1)"
            )
    if ex.array_parallelism is not None and not 1 <= ex.array_parallelism <= 100000:
        raise UsageError(
            f"--array-parallelism: {ex.array_parallelism} is not allowed; expected an integer from 1 to 100000"
        )
    request = slurm_executor.SlurmRequest(
        partition=ex.partition,
        gpus_per_run=int(ex.gpus_per_run or 0),
        cpus_per_run=int(ex.cpus_per_run),
        minutes=slurm_executor.parse_time(ex.time) if ex.time is not None else 60,
        array_parallelism=ex.array_parallelism or 256,
        setup=tuple(ex.slurm_setup),
        detach=ex.detach,
    )
    slurm_executor.check(request)
    return request


def check_with(ex: Execution, cfg) -> None:
    """What the executor cannot do with this experiment: seeds on demand and fused groups run in one local process."""
    if cfg.sequential and (ex.executor != "local" or ex.jobs_per_device > 1):
        where = "--executor " + ex.executor if ex.executor != "local" else "--jobs-per-device > 1"
        raise UsageError(f"--seeds auto: its rounds run in one process; not with {where}")
    if cfg.runtime.fuse != "off" and ex.executor != "local":
        raise UsageError(
            f'train.fuse: {cfg.runtime.fuse!r} is only for the local executor; with --executor {ex.executor} each run is a task of its own (fuse = "off")'
        )
