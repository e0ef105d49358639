"""The one-pass forward prototype whose compiled cost bench/README.md quotes computes the scan it claims to: its
instruction counts would mean nothing for a kernel that skipped work."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from one_pass_compile import inputs, launch, reference  # noqa: E402


@pytest.mark.parametrize("ns,block_d,warps", [(4, 32, 4), (2, 32, 2)])
def test_one_pass_prototype_matches_a_step_by_step_scan(ns, block_d, warps):
    R, N = 5, 8
    inp = inputs(batch=2, L=21, Dm=37, R=R, N=N)  # a partial last tile and a partial channel block
    got = launch(inp, R, N, ns, block_d, warps)
    expected = reference(inp, R, N)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5), (got.double() - expected).abs().max()
