"""Comparing a kernel's gradients with the float64 reference's, and two runs of the kernels with each other."""

import torch


def assert_gradients_close(names, grads, ref_grads, tol):
    """Each gradient within ``tol`` of the reference's, relative to the reference's largest entry: gradients of
    parameters sum over long sequences, so their absolute size grows with the sequence."""
    for name, g, r in zip(names, grads, ref_grads):
        scale = r.abs().max().item() + 1.0
        torch.testing.assert_close(g.double().cpu() / scale, r / scale, **tol, msg=lambda m: f"d{name}: {m}")


def assert_same_but_rounding(results, references):
    """Each tensor of ``results`` within a few float32 ulps (1e-5) of the matching one of ``references``, relative to
    its largest entry or 1: two runs of the kernels that differ only in the order of a sum (over a chunk's steps in
    tiles, over a segment's chunks)."""
    assert len(results) == len(references)
    for a, b in zip(results, references):
        scale = b.abs().max().clamp_min(1)
        torch.testing.assert_close(a / scale, b / scale, rtol=1e-5, atol=1e-5)
