"""`python -m harness bench`, as a user runs it, on small synthetic data: the comparison of the
tutorial's pipeline, the engine (with extra settings) and the floor, and the K-process scaling.
Numbers are only printed and written, never asserted against a time."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli, run_process

SMALL = ["--train-images", "400", "--val-images", "100"]


def test_bench_compares_the_three_ways_and_extra_engine_settings(tmp_path, data_dir):
    proc = run_cli(
        "bench",
        *SMALL,
        "--repeats",
        "2",
        "--engine",
        "precision=bf16",
        "--engine",
        "memory_format=contiguous,eval_batch_size=64",
        cwd=tmp_path,
        data=data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "reports" / "bench.json").read_text())
    ways = [
        "tutorial",
        "tutorial_augment",
        "harness",
        "harness_shuffled",
        "harness_augment",
        "harness[precision=bf16]",
        "harness[memory_format=contiguous,eval_batch_size=64]",
        "floor",
        "floor[channels_last,bf16]",
        "floor[contiguous,fp32]",
    ]
    assert list(result["median_seconds"]) == ways
    assert result["floor_of"] == {
        "harness": "floor",
        "harness_shuffled": "floor",
        "harness_augment": "floor",
        "harness[precision=bf16]": "floor[channels_last,bf16]",
        "harness[memory_format=contiguous,eval_batch_size=64]": "floor[contiguous,fp32]",
    }
    assert result["images_per_epoch"] == 500 and result["repeats"] == 2
    assert all(len(result["seconds_per_epoch"][w]) == 2 and min(result["seconds_per_epoch"][w]) > 0 for w in ways)
    med = result["median_seconds"]
    assert result["speedup_harness_vs_tutorial"] == pytest.approx(med["tutorial"] / med["harness"])
    assert result["harness_over_floor"] == pytest.approx(med["harness"] / med["floor"])
    assert result["augment_speedup_vs_tutorial"] == pytest.approx(med["tutorial_augment"] / med["harness_augment"])
    assert result["augment_cost_over_harness"] == pytest.approx(med["harness_augment"] / med["harness"])
    assert result["images_per_second"]["floor"] == pytest.approx(500 / med["floor"])
    assert result["shuffled_over_unshuffled"] == pytest.approx(med["harness_shuffled"] / med["harness"])
    assert result["tutorial_over_shuffled"] == pytest.approx(med["tutorial"] / med["harness_shuffled"])
    assert result["over_floor"]["harness[precision=bf16]"] == pytest.approx(
        med["harness[precision=bf16]"] / med["floor[channels_last,bf16]"]
    )
    assert "| harness_shuffled | " in proc.stdout and "shuffled/unshuffled: " in proc.stdout
    assert (
        "b/a: harness is" in proc.stdout
        and "b/c: harness takes" in proc.stdout
        and "augment: harness is" in proc.stdout
    )


# slow group: K real benchmark processes (about 15 s)
@pytest.mark.slow
def test_bench_jobs_measures_aggregate_throughput_of_k_processes(tmp_path, data_dir):
    proc = run_process("bench", *SMALL, "--jobs", "1,2", "--epochs", "2", cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "reports" / "bench-scaling.json").read_text())
    rows = result["scaling"]
    assert list(rows) == ["1", "2"] and result["epochs"] == 2 and result["images_per_epoch"] == 500
    for k, row in rows.items():
        assert row["images_per_second"] == pytest.approx(int(k) * 2 * 500 / row["wall_seconds"])
    assert rows["1"]["efficiency"] == pytest.approx(1.0)
    assert "K=2:" in proc.stdout and "efficiency" in proc.stdout


def test_bench_fused_times_k_runs_fused_against_k_separate_runs(tmp_path, data_dir):
    proc = run_cli("bench", *SMALL, "--fused", "1,2", "--repeats", "1", "--device", "cpu", cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "reports" / "bench-fused.json").read_text())
    rows = result["rows"]
    assert list(rows) == ["1", "2"] and result["images_per_epoch"] == 500 and result["auto_chooses"] == 1
    for k, row in rows.items():
        assert row["fused_images_per_second"] == pytest.approx(int(k) * 500 / row["fused_seconds"])
        assert row["speedup"] == pytest.approx(row["separate_seconds"] / row["fused_seconds"])
    assert "| 2 |" in proc.stdout and "auto does not fuse on a CPU" in proc.stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--fused", "1,1"], "--fused: '1,1' is not allowed"),
        (["--fused", "2", "--jobs", "2"], "--fused: not with --jobs or --engine"),
        (["--engine", "precision=fp16"], "--engine.precision: 'fp16' is not allowed"),
        (["--engine", "lr=0.1"], "--engine: 'lr=0.1' is not allowed; expected KEY=VALUE with KEY one of precision"),
        (["--engine", "compile=reduce-overhead"], "needs a CUDA device"),
        (["--jobs", "0,2"], "--jobs: '0,2' is not allowed"),
        (["--jobs", "2", "--engine", "precision=bf16", "--engine", "compile=default"], "at most one with --jobs"),
        (["--train-images", "900"], "--train-images/--val-images: 900 + 100 is not allowed"),
    ],
)
def test_bench_rejects_bad_requests_in_one_line(tmp_path, data_dir, args, fragment):
    proc = run_cli("bench", *args, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "reports").exists()
