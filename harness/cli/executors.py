"""Where `run` trains: the checks of --executor and its flags, before any work starts."""
from __future__ import annotations

import argparse

from harness.base.errors import UsageError

SLURM_ONLY = ("partition", "time", "array_parallelism", "slurm_setup", "detach")


def check(args: argparse.Namespace):
    """Refuse an executor request that cannot work (exit 2); the Slurm request for --executor slurm, else None."""
    if args.executor not in ("local", "ray", "slurm"):
        raise UsageError(f"--executor: {args.executor!r} is not allowed; expected local, ray or slurm")
    if args.executor != "slurm":
        given = [a for a in SLURM_ONLY if getattr(args, a) not in (None, False, [])]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')}: only with --executor slurm")
    if args.executor == "ray" and not args.ray_address:
        raise UsageError("--ray-address: required with --executor ray (the cluster's head, e.g. 10.0.0.5:6379, or auto)")
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address: only with --executor ray")
    if args.gpus_per_run is not None and not 0 <= args.gpus_per_run <= 8:
        raise UsageError(f"--gpus-per-run: {args.gpus_per_run} is not allowed; expected a number from 0 to 8")
    if not 0 < args.cpus_per_run <= 256:
        raise UsageError(f"--cpus-per-run: {args.cpus_per_run} is not allowed; expected a number above 0, at most 256")
    if args.executor != "local" and args.jobs_per_device > 1:
        raise UsageError(f"--jobs-per-device: only with the local executor; with --executor {args.executor} each run is a task of its own")
    if args.executor == "ray":  # before the store is created
        from harness.running import ray_executor

        ray_executor.import_ray()
        return None
    if args.executor != "slurm":
        return None
    from harness.running import slurm_executor

    for flag, value in (("--gpus-per-run", args.gpus_per_run), ("--cpus-per-run", args.cpus_per_run)):
        if value is not None and value != int(value):
            raise UsageError(f"{flag}: {value:g} is not allowed with --executor slurm; Slurm gives whole CPUs and GPUs (e.g. 1)")
    if args.array_parallelism is not None and not 1 <= args.array_parallelism <= 100000:
        raise UsageError(f"--array-parallelism: {args.array_parallelism} is not allowed; expected an integer from 1 to 100000")
    request = slurm_executor.SlurmRequest(
        partition=args.partition, gpus_per_run=int(args.gpus_per_run or 0), cpus_per_run=int(args.cpus_per_run),
        minutes=slurm_executor.parse_time(args.time) if args.time is not None else 60,
        array_parallelism=args.array_parallelism or 256, setup=tuple(args.slurm_setup), detach=args.detach)
    slurm_executor.check(request)
    return request
