"""Comparing a kernel's gradients with the float64 reference's."""

import torch


def assert_gradients_close(names, grads, ref_grads, tol):
    """Each gradient within ``tol`` of the reference's, relative to the reference's largest entry: gradients of
    parameters sum over long sequences, so their absolute size grows with the sequence."""
    for name, g, r in zip(names, grads, ref_grads):
        scale = r.abs().max().item() + 1.0
        torch.testing.assert_close(g.double().cpu() / scale, r / scale, **tol, msg=lambda m: f"d{name}: {m}")
