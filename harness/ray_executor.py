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
from pathlib import Path

from harness.errors import UsageError


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray: Ray is not installed; install the extra with `pip install -e .[ray]`") from None
    return ray


def run_pair(cfg, variant: str, seed: int, arrays, rerun: bool):
    """One Ray task: train one (variant, seed) pair on this node, tracked in the shared store."""
    from harness import runner, tracking
    from harness.claims import Claims
    from harness.console import Console

    # Checkpoints and claims stay on the node; the store is shared, and keys are unique per task.
    local = Path(tempfile.gettempdir()) / "harness-ray"
    cfg = dataclasses.replace(cfg, checkpoint_dir=str(local / "checkpoints"), reports_dir=str(local / "reports"))
    p = runner.prepare(cfg, rerun=rerun, arrays=arrays)
    console = Console()
    tracker = tracking.Tracker(p.uri, cfg.name, p.checkpoint_dir)
    claims = Claims(p.checkpoint_dir / "claims.sqlite")
    try:
        spec = runner.config_mod.resolve(cfg, variant, seed)
        key = runner.run_key(runner.variant_key(spec, p.split.fingerprint), seed)
        claims.acquire(key)
        console.header(f"{variant} seed {seed} on {runner.provenance.determinism(p.device)['device']}")
        return runner.run_one(p, tracker, claims, spec, key, runner.common_tags(p), console)
    finally:
        claims.close()


def run_on_ray(p, address: str, gpus_per_run: float | None, cpus_per_run: float, console) -> list:
    """Submit the unfinished pairs to the cluster at `address` and wait for them."""
    from harness import runner, tracking

    ray = _import_ray()
    if p.uri.startswith("sqlite:///"):
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
        tracker = tracking.Tracker(p.uri, p.cfg.name, p.checkpoint_dir)
        for v in p.cfg.variants:
            runner.variant_parent(p, tracker, runner.config_mod.resolve(p.cfg, v, p.cfg.seeds[0]), runner.common_tags(p))
        arrays = ray.put(p.arrays)
        task = ray.remote(run_pair).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=2)
        cfg = p.cfg if gpus_per_run else dataclasses.replace(p.cfg, train=dataclasses.replace(p.cfg.train, device="cpu"))
        futures = [task.remote(cfg, v, s, arrays, p.rerun) for v in p.cfg.variants for s in p.cfg.seeds]
        ray.get(futures)
    finally:
        ray.shutdown()
    return runner.collect(p)
