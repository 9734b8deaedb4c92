"""`harness.errors`, where `UsageError` lived before the code moved into layers (now
harness/base/errors.py). MLflow models logged before the move carry a copy of `variants/` that
imports it from here, so this name stays for them to load (tests/tracking/test_models.py)."""

from harness.base.errors import UsageError  # noqa: F401
