"""Running the (variant, seed) pairs on a Ray cluster: `run --executor ray --ray-address ADDRESS`.

The driver ships the dataset once to Ray's object store and submits one task per pair that is not
finished yet, with a fractional GPU request so several small runs share a GPU. Each task trains
its pair with the same code and the same run keys as a local run and logs to the same MLflow
store (a tracking server that every node reaches), so a rerun skips finished pairs wherever they
ran. Ray is an optional extra: `pip install -e .[ray]`.
"""
from __future__ import annotations

import dataclasses
import tempfile

from harness.base.errors import UsageError


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray: Ray is not installed; install the extra with `pip install -e .[ray]`") from None
    return ray


def run_pair(cfg, variant: str, seed: int, source, rerun: bool):
    """One Ray task: train one (variant, seed) pair on this node, tracked in the shared store."""
    from harness.running import remote

    # Checkpoints stay on the node (a retry elsewhere starts the pair over); the store is shared.
    local = f"{tempfile.gettempdir()}/harness-ray"
    cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, checkpoint_dir=f"{local}/checkpoints", reports_dir=f"{local}/reports"))
    return remote.train_pair(cfg, variant, seed, source, rerun, "a Ray task")


def run_on_ray(runner, address: str, gpus_per_run: float | None, cpus_per_run: float) -> None:
    """Submit the pairs of `runner` (a runner.Runner, which made the parents) to the cluster at
    `address` and wait for them; the caller reads the outcomes from the store."""
    from harness.settings import config

    ray = import_ray()
    cfg, console = runner.cfg, runner.console
    if runner.tracker.uri.startswith("sqlite:///"):
        console.line("note: a SQLite store is reachable only by nodes that share this file system; "
                     "give a real cluster an MLflow tracking server (--tracking-uri http://HOST:PORT)")
    try:
        ray.init(address=address, log_to_driver=True, logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"--ray-address: cannot connect to a Ray cluster at {address!r} ({e})") from None
    try:
        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        if gpus_per_run is None:
            gpus_per_run = 0.25 if cluster_gpus else 0.0
        if gpus_per_run and not cluster_gpus:
            raise UsageError(f"--gpus-per-run: {gpus_per_run} asked for, but the cluster at {address!r} has no GPU")
        console.line(f"ray cluster {address}: {ray.cluster_resources().get('CPU', 0):g} CPU, {cluster_gpus:g} GPU; "
                     f"each run asks for {cpus_per_run:g} CPU and {gpus_per_run:g} GPU")
        # Parents are made here, once, so tasks on different nodes never race to create one.
        for v in cfg.variants:
            runner.parent(config.resolve(cfg, v, cfg.seeds[0]))
        source = ray.put(runner.data.source)
        task = ray.remote(run_pair).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=2)
        sent = cfg if gpus_per_run else dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, device="cpu"))
        ray.get([task.remote(sent, v, s, source, runner.rerun) for v in cfg.variants for s in cfg.seeds])
    finally:
        ray.shutdown()
