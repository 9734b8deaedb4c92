"""Variants of the tutorial's network, one small file each; importing this package registers them all.

To add one, drop a file beside these that decorates a builder with `@register(...)`.
"""
from __future__ import annotations

import importlib
import pkgutil

from variants.registry import UnknownVariant, Variant, all_variants, get, names, register

_INFRASTRUCTURE = {"registry", "lenet"}


def variant_modules() -> list[str]:
    """The names of the modules in this package that define variants."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _INFRASTRUCTURE and not m.name.startswith("_"))


for _name in variant_modules():
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["UnknownVariant", "Variant", "all_variants", "get", "names", "register", "variant_modules"]
