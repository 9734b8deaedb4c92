"""The variant registry: a plain dict of names to `Variant` records and the decorator that fills it.

A variant is fully described by how it builds its model and which training settings it overrides.
A builder takes the data's `image_shape` (channels, height, width) and `num_classes` first, then
keyword arguments with defaults: the variant's parameters. Nothing outside `variants/` looks
at a variant's name to decide anything.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

Builder = Callable[..., nn.Module]
DATA_ARGS = ("image_shape", "num_classes")  # what every builder receives from the dataset
CIFAR10 = {"image_shape": (3, 32, 32), "num_classes": 10}  # the shape a bare `build()` assumes


@dataclass(frozen=True)
class Variant:
    name: str
    hypothesis: str  # one line: what this variant tests against the baseline
    builder: Builder
    train: dict[str, Any] = field(default_factory=dict)  # training settings it overrides
    module: str = ""  # the module that registered it

    @property
    def params(self) -> dict[str, Any]:
        """The builder's keyword arguments with their defaults: the variant's model parameters."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items() if k not in DATA_ARGS and p.default is not inspect.Parameter.empty}

    def build(self, image_shape: tuple[int, int, int] = CIFAR10["image_shape"], num_classes: int = CIFAR10["num_classes"],
              **params: Any) -> nn.Module:
        return self.builder(image_shape, num_classes, **params)


_REGISTRY: dict[str, Variant] = {}


def register(name: str, hypothesis: str, train: dict[str, Any] | None = None) -> Callable[[Builder], Builder]:
    """Register `builder` under `name`. Registering a name twice raises ValueError."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"variant {name!r} is already registered (by {_REGISTRY[name].module})")
        first = tuple(inspect.signature(builder).parameters)[:2]
        if first != DATA_ARGS:
            raise ValueError(f"variant {name!r}: its builder must take {', '.join(DATA_ARGS)} first, got {', '.join(first) or 'nothing'}")
        if not hypothesis or "\n" in hypothesis:
            raise ValueError(f"variant {name!r} needs a one-line hypothesis")
        _REGISTRY[name] = Variant(name, hypothesis, builder, dict(train or {}), builder.__module__)
        return builder

    return decorate


class UnknownVariant(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def unknown_message(name: str) -> str:
    valid = sorted(_REGISTRY)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown variant {name!r}{hint}; valid variants: {', '.join(valid)}"


def get(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariant(unknown_message(name)) from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def all_variants() -> list[Variant]:
    return [_REGISTRY[n] for n in names()]
