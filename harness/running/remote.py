"""One (variant, seed) pair trained on a cluster node: what a Ray task and a Slurm array task run.

The node trains its pair with the same code and the same run key as a local run, and logs to the
same store, so a later command skips the pair wherever it ran. Claims stay on the node (each task
holds one key; SQLite's locks are not safe on a network file system); checkpoints go wherever the
caller's settings put them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def claims_folder() -> Path:
    """The node's own folder for claims."""
    return Path(tempfile.gettempdir()) / "harness-claims"


def train_pair(cfg, variant: str, seed: int, source, rerun: bool, where: str):
    """Train (or skip, or resume) one pair on this node and return its Outcome. `source` is the
    dataset as the driver read it, or None to read it here from the settings; `where` names the
    task in its header line."""
    import torch

    from harness.running import claims as claims_mod
    from harness.running import preflight, units
    from harness.running.claims import Claims
    from harness.running.console import Console
    from harness.running.runner import Runner
    from harness.settings import config
    from harness.tracking import provenance
    from harness.variants import plugins

    # the user's component files (a shared file system) or modules, on this node
    plugins.load(cfg.components, "components")
    ready = preflight.prepare(cfg, seed=seed, source=source)
    console = Console()
    runner = Runner(cfg, ready.data, ready.uri, ready.device, console, rerun)
    device = ready.device
    folder = claims_folder()
    folder.mkdir(parents=True, exist_ok=True)
    claims = Claims(folder / f"{cfg.name}-{claims_mod.FILENAME}")
    try:
        spec = config.resolve(cfg, variant, seed)
        key, deadline = runner.key(spec), time.time() + 2 * claims_mod.LEASE_S
        # the key is this task's alone: a claim here is a dead attempt's, whose lease runs out
        while not claims.acquire(key):
            if time.time() > deadline:
                raise RuntimeError(
                    f"{variant} seed {seed}: a live process on this node holds its claim; is another runner training it?"
                )
            time.sleep(1.0)
        console.header(
            f"{variant} seed {seed} on {provenance.determinism(device)['device']} ({where}, {torch.get_num_threads()} thread(s))"
        )
        try:
            return units.run(runner.place, [((variant, seed), spec)], claims)[(variant, seed)]
        finally:
            runner.settle(set())
            runner.log_figures()
    finally:
        claims.close()


def close_lost(runner, variant: str, seed: int, error: str) -> None:
    """On the driver, after a task ended without finishing its pair: its run, if a process died
    leaving it RUNNING, is marked KILLED with `error` (the next command resumes it)."""
    from harness.settings import config
    from harness.tracking import names

    for run in runner.tracker.runs_with_key(runner.key(config.resolve(runner.cfg, variant, seed))):
        if run.status == "RUNNING":
            runner.tracker.set_tags(run.run_id, {names.ERROR_TAG: error[:5000]})
            runner.tracker.finish(run.run_id, "KILLED")
