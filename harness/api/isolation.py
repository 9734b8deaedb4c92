"""What `harness.run`, `harness.tune` and `harness.load` change in their caller's process, undone
when they return or raise. Training seeds the global generators and sets torch's determinism
flags and thread count as the tutorial does; MLflow's database set-up reconfigures logging (its
Alembic migrations lower the root logger to ERROR and disable existing loggers); the harness sets
MLflow's environment variables and silences a few warnings. A script or notebook that calls the
API keeps its own generators' streams, its log messages, its warnings, its environment and its
matplotlib settings (tests/api/test_library.py::test_the_api_leaves_its_callers_process_as_it_found_it)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import sys
import warnings

import numpy as np


@contextlib.contextmanager
def kept_as_it_was(trains: bool = True):
    """`trains`: the call imports torch (it is imported first, so that its state is the caller's
    to keep); otherwise torch's state is kept only when the caller had imported it."""
    saved_env = dict(os.environ)
    states = (random.getstate(), np.random.get_state())
    if trains:
        import torch  # noqa: F401
    torch = sys.modules.get("torch")
    torch_state = _torch_state(torch) if torch is not None else None
    loggers = _loggers()
    # MLflow's usage telemetry (its documented switch) is off during the call unless the caller turned it on
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with warnings.catch_warnings():
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            if torch_state is not None:
                _restore_torch(torch, torch_state)
            _restore_loggers(loggers)
            for key in set(os.environ) - set(saved_env):
                del os.environ[key]
            os.environ.update({k: v for k, v in saved_env.items() if os.environ.get(k) != v})


def isolated(trains: bool = True):
    """A decorator: the function runs inside `kept_as_it_was(trains)`."""

    def decorate(function):
        @functools.wraps(function)
        def inside(*args, **kwargs):
            _usage_errors_in_one_line()
            with kept_as_it_was(trains):
                return function(*args, **kwargs)

        return inside

    return decorate


def _torch_state(torch) -> dict:
    cudnn = torch.backends.cudnn
    return {
        "rng": torch.random.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "cudnn": (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32),
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "deterministic": (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        "threads": torch.get_num_threads(),
        "precision": torch.get_float32_matmul_precision(),
    }


def _restore_torch(torch, state: dict) -> None:
    torch.random.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    cudnn = torch.backends.cudnn
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = state["cudnn"]
    torch.backends.cuda.matmul.allow_tf32 = state["matmul_tf32"]
    torch.use_deterministic_algorithms(state["deterministic"][0], warn_only=state["deterministic"][1])
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
    torch.set_float32_matmul_precision(state["precision"])


def _loggers() -> dict:
    """Each logger's level, switch, propagation and handlers (the root's under '')."""
    named = {name: lg for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    return {
        name: (lg, lg.level, lg.disabled, lg.propagate, list(lg.handlers))
        for name, lg in {"": logging.root, **named}.items()
    }


def _restore_loggers(saved: dict) -> None:
    for lg, level, disabled, propagate, handlers in saved.values():
        lg.setLevel(level)
        lg.disabled, lg.propagate = disabled, propagate
        lg.handlers[:] = handlers


def ipython_shell():
    """The IPython shell this process runs in (a Jupyter kernel's or a terminal's), else None."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has it already
    return ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None


def _usage_errors_in_one_line() -> None:
    """In a Jupyter kernel, a UsageError (bad input, said in one line by the command line too) is
    shown as that one line, not as seven frames of the harness's internals. Set once per kernel;
    other exceptions keep IPython's traceback."""
    shell = ipython_shell()
    if shell is None or getattr(shell, "_harness_one_line", False):
        return
    from harness.base.errors import UsageError

    def one_line(shell, etype, value, tb, tb_offset=None):
        shell.showtraceback((etype, value, tb), exception_only=True)  # IPython's own "Type: message" line

    shell.set_custom_exc((UsageError,), one_line)
    shell._harness_one_line = True
