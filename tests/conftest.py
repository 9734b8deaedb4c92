"""The fixtures every test folder shares: synthetic data on disk, a clean component registry, small
tensors, and a small trained project. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY, fresh_store, registry_kept, run_process, tiny_tensors, write_npz

# The longest files first (their test time in the slow group, measured at commit 9e06a47), so that
# the two workers (each takes whole files: --dist loadfile) do not end on one long file while the
# other idles; every other file follows in collection order.
LONGEST_FIRST = (
    "tests/running/test_faults.py",  # 379 s
    "tests/analysis/test_sequential.py",  # 270 s
    "tests/running/test_slurm.py",  # 237 s
    "tests/running/test_seeds_on_demand.py",  # 202 s
    "tests/project/test_gpu_script.py",  # 158 s
    "tests/running/test_fused_runs.py",  # 139 s
    "tests/running/test_ray.py",  # 135 s
    "tests/running/test_team.py",  # 123 s
    "tests/tuning/test_tuning.py",  # 105 s
    "tests/report/test_report.py",  # the default suite's longest, 75 s
)


def pytest_collection_modifyitems(items) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_npz(tmp_path / "data")


@pytest.fixture
def clean_registry():
    """Whatever a test registers or imports from its files is forgotten afterwards."""
    with registry_kept():
        yield


@pytest.fixture(scope="module")
def tensors():
    """Small synthetic data checked, split (prefix, 80%) and on the CPU, as the engine takes it."""
    return tiny_tensors(300, 100)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A project folder whose store holds baseline and dropout over two seeds (one epoch each):
    (data, project). Made once per worker, in a process of its own so that its store is closed
    whole; tests copy it (helpers.copy_of) before they change anything."""
    root = tmp_path_factory.mktemp("trained")
    data = write_npz(root / "data")
    work = root / "proj"
    fresh_store(work)
    proc = run_process("run", "--variants", "baseline,dropout", "--seeds", "2", *TINY, cwd=work, data=data)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return data, work


@pytest.fixture(scope="module")
def stratified_tensors():
    """A stratified split of 256 images (75% training), on the CPU: `tensors` is a prefix split of 300."""
    return tiny_tensors(256, 40, "stratified", 0.75)
