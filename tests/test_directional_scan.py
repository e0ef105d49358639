"""The PyTorch directional scan (permute + scan + merge) against a loop-by-loop definition."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from directional_cases import directional_scan_loops, directions_for, make_gate, make_layer_inputs
from scan2d import ScanDirection, directional_scan


@given(st.integers(1, 2), st.integers(1, 11), st.integers(1, 11), st.sampled_from([1, 2, 4]),
       st.sampled_from([None, 2, 4, 8]), st.sampled_from([None, "aligned", "sequential"]), st.booleans())
def test_torch_path_matches_loops(batch, height, width, K, window, cross_scale, gated):
    if cross_scale is not None and window is not None and window < 2:
        window = 2
    inp = make_layer_inputs(batch, height, width, 5, K, cross_scale=cross_scale is not None)
    dirs = directions_for(K, window, cross_scale)
    gate = make_gate(5, K) if gated else None
    expected = directional_scan_loops(**inp, directions=dirs, height=height, width=width, gate=gate)
    out = directional_scan(**inp, directions=dirs, height=height, width=width, gate=gate, backend="torch")
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_gradients_flow_to_every_input():
    inp = make_layer_inputs(2, 5, 6, 4, 4, cross_scale=True)
    for v in inp.values():
        v.requires_grad_()
    dirs = directions_for(4, 4, "aligned")

    def f(*args):
        return directional_scan(*args, directions=dirs, height=5, width=6, backend="torch",
                                gate=make_gate(4, 4))

    names = ["u", "xdbl", "dt_weight", "dt_bias", "A", "D"]
    args = [inp[n] for n in names]
    out = directional_scan(*args, directions=dirs, height=5, width=6, u_low=inp["u_low"],
                           xdbl_low=inp["xdbl_low"], gate=make_gate(4, 4), backend="torch")
    grads = torch.autograd.grad(out.square().sum(), args + [inp["u_low"], inp["xdbl_low"]])
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert torch.autograd.gradcheck(
        lambda u, xdbl, ul: directional_scan(u, xdbl, *args[2:], directions=dirs, height=5, width=6, u_low=ul,
                                             xdbl_low=inp["xdbl_low"].detach(), gate=make_gate(4, 4),
                                             backend="torch"),
        (inp["u"], inp["xdbl"], inp["u_low"]), fast_mode=True)


def test_reverse_pair_is_not_a_noop():
    # A reversed scan sees the sequence from the other end: the two directions must give different outputs.
    inp = make_layer_inputs(1, 4, 4, 3, 1)
    fwd = directional_scan(**inp, directions=(ScanDirection(2),), height=4, width=4, backend="torch")
    rev = directional_scan(**inp, directions=(ScanDirection(2, reverse=True),), height=4, width=4, backend="torch")
    assert (fwd - rev).abs().max() > 1e-3


def _args():
    return make_layer_inputs(1, 4, 4, 3, 2, dtype=torch.float32), directions_for(2, 2)


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update(u=a["u"][:, :15]), r"u has 15 tokens"),
    (lambda a: a.update(xdbl=a["xdbl"][:, :, :1]), r"xdbl must have shape"),
    (lambda a: a.update(A=a["A"][:1]), r"A must have shape \(K, dim, N\)"),
    (lambda a: a.update(D=a["D"][:, :2]), r"D must have shape \(K, dim\)"),
    (lambda a: a.update(u_low=a["u"]), r"u_low / xdbl_low were given"),
])
def test_bad_arguments(change, match):
    inp, dirs = _args()
    change(inp)
    with pytest.raises(ValueError, match=match):
        directional_scan(**inp, directions=dirs, height=4, width=4, backend="torch")


def test_cross_scale_needs_low_tokens_and_one_mode():
    inp, _ = _args()
    with pytest.raises(ValueError, match="need u_low and xdbl_low"):
        directional_scan(**inp, directions=directions_for(2, 4, "aligned"), height=4, width=4)
    mixed = (ScanDirection(4), ScanDirection(4, cross_scale="aligned"))
    with pytest.raises(ValueError, match="mix cross-scale modes"):
        directional_scan(**inp, directions=mixed, height=4, width=4)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("batch,dim,gated", [(0, 5, False), (0, 5, True), (2, 0, False)])
@pytest.mark.parametrize("cross_scale", [None, "aligned"])
def test_empty_layers_give_empty_outputs_and_zero_gradients(backend, batch, dim, gated, cross_scale):
    # No images (batch 0) or no channels: an empty output and zero gradients of every input's shape, on both
    # backends (Triton under the interpreter on a CPU).
    inp = make_layer_inputs(batch, 5, 6, dim, 2, cross_scale=cross_scale is not None, dtype=torch.float32)
    inp = {k: v.requires_grad_() for k, v in inp.items()}
    gate = make_gate(dim, 2, dtype=torch.float32) if gated else None
    out = directional_scan(**inp, directions=directions_for(2, 4, cross_scale), height=5, width=6, gate=gate,
                           backend=backend)
    assert out.shape == (batch, 30, dim)
    out.sum().backward()
    for name, v in inp.items():
        assert v.grad is not None and torch.equal(v.grad, torch.zeros_like(v)), name
