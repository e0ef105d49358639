"""The one-pass forward prototype whose compiled cost bench/README.md quotes computes the scan it claims to: its
instruction counts would mean nothing for a kernel that skipped work."""

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from one_pass_bench import run as bench_run  # noqa: E402
from one_pass_compile import STATES_IN_THREAD, inputs, launch, reference  # noqa: E402
from test_bench_baseline import SelectiveScanCudaStandIn  # noqa: E402


@pytest.mark.parametrize("ns,block_d,warps", [(4, 32, 4), (2, 32, 2), STATES_IN_THREAD])
def test_one_pass_prototype_matches_a_step_by_step_scan(ns, block_d, warps):
    R, N = 5, 8
    inp = inputs(batch=2, L=21, Dm=37, R=R, N=N)  # a partial last tile and a partial channel block
    got = launch(inp, R, N, ns, block_d, warps)
    expected = reference(inp, R, N)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5), (got.double() - expected).abs().max()


def test_one_pass_bench_runs_every_backend_on_the_same_work(capsys):
    """The GPU timing harness, on the CPU: a lease must not be spent finding that it fails.  mamba-ssm's op is a
    stand-in that checks its argument conventions and computes with the PyTorch path."""
    args = argparse.Namespace(smoke=True, repeats=1)
    rows = bench_run(args, "unused.jsonl", module=SelectiveScanCudaStandIn)
    assert [row["backend"] for row in rows] == ["mamba_ssm", "drop_in", "one_pass", "one_pass"]
    assert {(row["states_across_warps"], row["num_warps"]) for row in rows[2:]} == {(1, 1), (4, 4)}
    # Each output against the drop-in's: the stand-in (the PyTorch path, float32) within the script's own bound,
    # both prototype layouts as closely as the float64 comparison above.
    assert rows[0]["rel_err_vs_drop_in"] < 1e-4
    assert all(row["rel_err_vs_drop_in"] < 1e-6 for row in rows[2:]), [row["rel_err_vs_drop_in"] for row in rows]
    assert all(row["fwd_ms"] > 0 for row in rows)
    assert rows[2]["fwd_speedup_vs_mamba_ssm"] == pytest.approx(rows[0]["fwd_ms"] / rows[2]["fwd_ms"], rel=1e-2)
