"""From a resolved run to what the engine trains: the network's builder and the generic pieces
(optimizer, loss, schedule, batch transform) that the variant's components chose."""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

import harness.variants as registry
from harness.data.datasets import Dataset
from harness.settings import designs
from harness.settings.config import RunSpec
from harness.training import engine


def assemble(spec: RunSpec, dataset: Dataset) -> tuple[Callable[[], nn.Module], engine.Pieces]:
    """The builder of the run's network for `dataset` and its engine pieces (tutorial's by default).
    Raises variants.Conflict when two components set the same piece."""
    change = registry.get(designs.split_source(spec.variant)[0]).change(spec.model_params)
    chosen = {
        f.name: getattr(change, f.name)
        for f in dataclasses.fields(engine.Pieces)
        if getattr(change, f.name) is not None
    }

    def build() -> nn.Module:
        return change.build(dataset.image_shape, dataset.num_classes)

    return build, engine.Pieces(**chosen)
