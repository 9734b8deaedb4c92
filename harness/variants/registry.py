"""The component registry: named changes to the tutorial's training, and their compositions.

A component is a function of its parameters (keyword arguments with defaults) that returns a
`Change`: keyword arguments for the network's builder, and optionally a batch transform, a loss,
an optimizer or a learning-rate schedule; `register(train={...})` adds training settings it
overrides. A variant is a set of components, written `a+b+c` in any order and named canonically
(sorted); the empty set is `baseline`, the tutorial as published. Two components that set the
same thing to different values cannot be composed. Nothing outside `harness/variants/` looks at a
component's name to decide anything.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from harness.base.errors import UsageError, unknown_component
from harness.variants.lenet import LeNet


class RegistryError(UsageError, ValueError):
    """A component file registers something invalid: the command stops with one line naming it."""


CIFAR10_SHAPE, CIFAR10_CLASSES = (3, 32, 32), 10  # what a bare `build()` assumes
BASELINE = "baseline"
PIECES = ("architecture", "transform", "loss", "optimizer", "schedule")


@dataclass(frozen=True)
class Change:
    """What a component changes. Every field's default changes nothing: the tutorial's training."""

    model: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the architecture
    # (image_shape, num_classes, **model) -> network; default LeNet
    architecture: Callable[..., nn.Module] | None = None
    transform: Callable | None = None  # (training batch, torch.Generator) -> batch; never applied when evaluating
    loss: Callable[[], nn.Module] | None = None  # the training loss; default cross-entropy
    optimizer: Callable | None = None  # (parameters, settings with .lr and .weight_decay) -> optimizer; default Adam
    schedule: Callable | None = None  # (optimizer, settings with .epochs) -> LR scheduler stepped once per epoch
    fusable: bool = True  # False: its runs never train in a fused group (train.fuse), always alone

    def build(self, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        """The network this change describes, for the data's shape."""
        return (self.architecture or LeNet)(image_shape, num_classes, **self.model)


class Conflict(ValueError):
    """Two components of one variant set the same thing to different values."""


@dataclass(frozen=True)
class Component:
    name: str
    hypothesis: str  # one line: what adding this component to the baseline does
    make: Callable[..., Change]
    train: dict[str, Any] = field(default_factory=dict)  # training settings it overrides
    module: str = ""  # the module that registered it
    path: str = ""  # the file of that module ("" for code without a file, e.g. a notebook cell)
    origin: str = "shipped"  # where it came from: shipped, or the --components entry / entry point that loaded it
    digest: str = ""  # a user component's source hash (its file's bytes), part of its runs' keys; "" when shipped

    @property
    def shipped(self) -> bool:
        return self.origin == "shipped"

    @property
    def params(self) -> dict[str, Any]:
        """The function's keyword arguments with their defaults: the component's parameters."""
        return {
            k: p.default
            for k, p in inspect.signature(self.make).parameters.items()
            if p.default is not inspect.Parameter.empty
        }


@dataclass(frozen=True)
class Variant:
    components: tuple[Component, ...]  # sorted by name; () is the baseline

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.components) or BASELINE

    @property
    def params(self) -> dict[str, Any]:
        """Every component's parameters with their defaults, as `component.parameter`."""
        return {f"{c.name}.{k}": v for c in self.components for k, v in c.params.items()}

    def change(self, params: dict[str, Any] | None = None) -> Change:
        """The components' changes merged (`params` as `component.parameter`); raises Conflict."""
        params = {**self.params, **(params or {})}
        model: dict[str, tuple[str, Any]] = {}
        pieces: dict[str, tuple[str, Any]] = {}
        fusable = True
        for c in self.components:
            ch = c.make(**{k: params[f"{c.name}.{k}"] for k in c.params})
            fusable = fusable and ch.fusable
            for key, value in ch.model.items():
                _merge(model, f"model.{key}", key, c.name, value)
            for piece in PIECES:
                if getattr(ch, piece) is not None:
                    _merge(pieces, piece, piece, c.name, getattr(ch, piece))
        return Change({k: v for k, (_, v) in model.items()}, **{k: v for k, (_, v) in pieces.items()}, fusable=fusable)

    def describe(self) -> str:
        """What this variant changes from the tutorial, as `list` prints it: model parameters,
        training settings and the pieces it replaces (its components' default parameters)."""
        change = self.change()
        changes = [f"model {k}={val}" for k, val in change.model.items()]
        changes += [f"train.{k}={val}" for c in self.components for k, val in c.train.items()]
        changes += [
            f"{piece} {getattr(change, piece).__name__}" for piece in PIECES if getattr(change, piece) is not None
        ]
        return "; ".join(changes) or "nothing (the tutorial)"

    @property
    def hypothesis(self) -> str:
        return " ".join(c.hypothesis for c in self.components if c.hypothesis)

    def build(
        self,
        image_shape: tuple[int, int, int] = CIFAR10_SHAPE,
        num_classes: int = CIFAR10_CLASSES,
        params: dict[str, Any] | None = None,
    ) -> nn.Module:
        return self.change(params).build(image_shape, num_classes)


def _merge(seen: dict, label: str, key: str, component: str, value: Any) -> None:
    if key in seen and seen[key][1] is not value and seen[key][1] != value:
        first, before = seen[key]
        raise Conflict(
            f"components {first!r} and {component!r} both set {label}, to {_shown(before)} and {_shown(value)}; "
            "compose components that change different things"
        )
    seen[key] = (component, value)


def _shown(value: Any) -> str:
    return getattr(value, "__qualname__", None) or repr(value)


_REGISTRY: dict[str, Component] = {}
_LOADING = {"origin": ""}  # set by harness/variants/plugins.py while it imports a user's file, module or entry point


def _source_of(make: Callable) -> tuple[str, str]:
    """(the file of the module that defines `make`, the sha256 of what identifies its code): the
    file's bytes, or for code without a file (a notebook cell) the function's own source."""
    module = sys.modules.get(make.__module__)
    path = str(getattr(module, "__file__", "") or "")
    try:
        data = Path(path).read_bytes() if path else inspect.getsource(make).encode()
    except (OSError, TypeError):
        data = make.__qualname__.encode()
    return path, hashlib.sha256(data).hexdigest()[:16]


def register(
    name: str, hypothesis: str, train: dict[str, Any] | None = None
) -> Callable[[Callable[..., Change]], Callable[..., Change]]:
    """Register a component under `name`. Registering a name twice raises ValueError."""

    def decorate(make: Callable[..., Change]) -> Callable[..., Change]:
        shipped = make.__module__.startswith("harness.variants.") and not _LOADING["origin"]
        path, digest = _source_of(make)
        if name in _REGISTRY:
            held = _REGISTRY[name]
            raise RegistryError(
                f"variants: component {name!r} in {path or make.__module__} collides with the "
                f"{'shipped ' if held.shipped else ''}component {name!r} in {held.path or held.module}; rename one of them"
            )
        if not name or not all(ch.isalnum() or ch == "_" for ch in name):
            raise RegistryError(
                f"variants: component name {name!r}: use letters, digits and '_' ('+' joins components)"
            )
        if not hypothesis or "\n" in hypothesis:
            raise RegistryError(f"variants: component {name!r} ({make.__module__}) needs a one-line hypothesis")
        missing = [k for k, p in inspect.signature(make).parameters.items() if p.default is inspect.Parameter.empty]
        if missing:
            raise RegistryError(
                f"variants: component {name!r} ({make.__module__}): every parameter needs a default, {', '.join(missing)} has none"
            )
        origin = "shipped" if shipped else (_LOADING["origin"] or f"module {make.__module__}")
        _REGISTRY[name] = Component(
            name, hypothesis, make, dict(train or {}), make.__module__, path, origin, "" if shipped else digest
        )
        return make

    return decorate


class UnknownVariant(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def unknown_message(name: str) -> str:
    return unknown_component(name, sorted(_REGISTRY))


def component(name: str) -> Component:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariant(unknown_message(name)) from None


def get(name: str) -> Variant:
    """The variant `a+b+...` (any order; `baseline` alone or in a composition adds nothing)."""
    parts = [p.strip() for p in name.split("+")]
    if not all(parts):
        raise UnknownVariant(
            f"variant {name!r} has an empty component; write components joined by '+', e.g. dropout+batchnorm"
        )
    named = [p for p in parts if p != BASELINE]
    found = {p: component(p) for p in named}
    if len(found) != len(named):
        raise UnknownVariant(f"variant {name!r} names a component twice")
    return Variant(tuple(found[k] for k in sorted(found)))


def canonical(name: str) -> str:
    return get(name).name


def names() -> list[str]:
    """The registered components (each is also a variant on its own)."""
    return sorted(_REGISTRY)


def all_components() -> list[Component]:
    return [_REGISTRY[n] for n in names()]


def unregister_from(path: str) -> None:
    """Forget the components a file registered (before that file, edited, is imported again)."""
    for name in [n for n, c in _REGISTRY.items() if c.path == path and not c.shipped]:
        del _REGISTRY[name]
