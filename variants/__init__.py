"""Variants of the tutorial's network, one small file each; importing this package registers them all.

To add one, drop a file beside these that decorates a builder with `@register(...)` and import it
below (a test fails when a file in this folder is not imported here).
"""
from __future__ import annotations

from variants import baseline, batchnorm, dropout, weight_decay  # noqa: F401 - importing registers them
from variants.registry import CIFAR10, UnknownVariant, Variant, all_variants, get, names, register, unknown_message

__all__ = ["CIFAR10", "UnknownVariant", "Variant", "all_variants", "get", "names", "register", "unknown_message"]
