"""Components that change the tutorial's training, one small file each, and their compositions;
importing this package registers them all.

To add one, drop a file beside these that decorates a function returning a `Change` with
`@register(...)` and import it below (a test fails when a file here is not imported). Components
from the user's own code come through `harness.variants.plugins`: a file or module named by `--components`,
and the `harness.components` entry points of installed packages, imported here after the shipped ones.

The `variants` layer. May import: harness.base, harness.data and harness.training (their public
surface `harness` too, as a user's component does). Unlike the other layers' `__init__`, this one
imports its modules: importing the package registers them.
"""

from __future__ import annotations

from harness.variants import augment, baseline, batchnorm, cosine, dropout, label_smoothing, plugins, sgd, weight_decay  # noqa: F401 - registers them
from harness.variants.registry import (
    BASELINE,
    Change,
    Component,
    Conflict,
    UnknownVariant,
    Variant,
    all_components,
    canonical,
    component,
    get,
    names,
    register,
    unknown_message,
)

plugins.load_entry_points()  # after the shipped components, so a plugin that collides with one is refused

__all__ = [
    "BASELINE",
    "Change",
    "Component",
    "Conflict",
    "UnknownVariant",
    "Variant",
    "all_components",
    "canonical",
    "component",
    "get",
    "names",
    "register",
    "unknown_message",
]
