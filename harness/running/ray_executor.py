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

RETRIES = 2  # a task whose node or worker process dies is run again this many times


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray: Ray is not installed; install the extra with `pip install -e .[ray]`"
        ) from None
    return ray


def run_pair(cfg, variant: str, seed: int, source, rerun: bool):
    """One Ray task: train one (variant, seed) pair on this node, tracked in the shared store."""
    from harness.running import remote

    # Checkpoints go to the node's temporary folder: a retry on another node resumes where that folder is
    # shared (as on a loopback cluster) and starts the pair over where it is not; the store is shared.
    local = f"{tempfile.gettempdir()}/harness-ray"
    cfg = dataclasses.replace(
        cfg, paths=dataclasses.replace(cfg.paths, checkpoint_dir=f"{local}/checkpoints", reports_dir=f"{local}/reports")
    )
    return remote.train_pair(cfg, variant, seed, source, rerun, "a Ray task")


def run_on_ray(runner, address: str, gpus_per_run: float | None, cpus_per_run: float) -> dict[tuple[str, int], str]:
    """Submit the pairs of `runner` (a runner.Runner, which made the parents) to the cluster at
    `address` and wait for them. A task on a node that dies is retried on another (RETRIES times),
    resuming from its checkpoint where the nodes share the checkpoint folder. Returns what went
    wrong with each pair that failed; the caller reads the outcomes from the store."""
    from harness.running import remote
    from harness.settings import config

    ray = import_ray()
    cfg, console = runner.cfg, runner.console
    if runner.tracker.uri.startswith("sqlite:///"):
        console.line(
            "note: a SQLite store is reachable only by nodes that share this file system; "
            "give a real cluster an MLflow tracking server (--tracking-uri http://HOST:PORT)"
        )
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
        console.line(
            f"ray cluster {address}: {ray.cluster_resources().get('CPU', 0):g} CPU, {cluster_gpus:g} GPU; "
            f"each run asks for {cpus_per_run:g} CPU and {gpus_per_run:g} GPU"
        )
        # Parents are made here, once, so tasks on different nodes never race to create one.
        for v in cfg.variants:
            runner.parent(config.resolve(cfg, v, cfg.seeds[0]))
        source = ray.put(runner.data.source)
        task = ray.remote(run_pair).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=RETRIES)
        sent = cfg if gpus_per_run else dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, device="cpu"))
        pairs = [(v, s) for v in cfg.variants for s in cfg.seeds]
        refs = {task.remote(sent, v, s, source, runner.rerun): (v, s) for v, s in pairs}
        failures = {}
        for ref, (variant, seed) in refs.items():  # a task whose retries ran out fails its pair alone
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as e:
                lines = [line for line in str(e).strip().splitlines() if line.strip()]
                failures[(variant, seed)] = (
                    f"Ray task failed after {RETRIES} retries: {lines[-1] if lines else type(e).__name__}"
                )
                remote.close_lost(runner, variant, seed, failures[(variant, seed)])
            else:
                if outcome.status != "FINISHED":
                    failures[(variant, seed)] = outcome.error
        return failures
    finally:
        ray.shutdown()
