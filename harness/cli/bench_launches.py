"""Kernel-launching ops per training step of LeNet, separate and fused (harness/training/launches.py
counts them), as one JSON object: benchmarks/launches.py prints it, tests/training/test_launches.py holds it."""

from __future__ import annotations

import json

import torch

from harness.training.launches import per_step


def _data(n: int, device: torch.device, shape=(3, 32, 32)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    return x, y, x[:32], y[:32]


def counts(device: str = "cpu", batch: int = 32) -> dict[str, float]:
    """Ops per step of a separate baseline run, fused groups of 2 and 8 baseline seeds, 8 mixed
    members (their own dropout p, learning rate and weight decay) and 8 seeds of `augment`; and
    each one's host reads per step (`syncs`)."""
    import dataclasses

    from harness.training import engine, fused
    from harness.variants.augment import crop_and_flip
    from harness.variants.lenet import LeNet

    dev = torch.device(device)
    base = engine.TrainSettings(epochs=1, batch_size=batch, eval_batch_size=batch)
    runtime = engine.Runtime(progress_every=0)
    data = {}

    def x(steps):
        if steps not in data:
            data[steps] = _data(steps * batch, dev)
        return data[steps]

    def separate(steps):
        engine.train(lambda: LeNet(), *x(steps), base, 1, runtime=runtime)

    def group(specs, pieces=engine.Pieces()):
        def train(steps):
            members = [
                fused.Member(
                    lambda p=p: LeNet(dropout=p), *x(steps), dataclasses.replace(base, lr=lr, weight_decay=wd), 1 + i
                )
                for i, (p, lr, wd) in enumerate(specs)
            ]
            fused.train_group(members, runtime=runtime, pieces=pieces)

        return train

    plain = (0.0, 1e-3, 0.0)
    mixed = [
        (0.0, 1e-3, 0.0),
        (0.5, 1e-3, 0.0),
        (0.3, 2e-3, 5e-4),
        (0.0, 5e-4, 1e-4),
        (0.5, 1e-3, 5e-4),
        (0.2, 3e-3, 0.0),
        (0.0, 1e-3, 1e-3),
        (0.5, 2e-3, 0.0),
    ]
    ways = {
        "separate": separate,
        "fused_2": group([plain] * 2),
        "fused_8": group([plain] * 8),
        "fused_8_mixed": group(mixed),
        "fused_8_augment": group([plain] * 8, engine.Pieces(transform=crop_and_flip)),
    }
    out: dict[str, float] = {}
    syncs: dict[str, float] = {}
    for name, train in ways.items():
        ops, reads, _ = per_step(train)
        out[name] = round(ops, 2)
        syncs[name] = round(reads, 2)
    out["ratio_fused_8"] = round(out["fused_8"] / out["separate"], 3)
    out["ratio_fused_8_mixed"] = round(out["fused_8_mixed"] / out["separate"], 3)
    return {**out, "syncs": syncs}


if __name__ == "__main__":
    print(json.dumps(counts()))
